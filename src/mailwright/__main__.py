from mailwright.cli.main import main

main()
