/* slowsync: an LD_PRELOAD shim that makes fsync(2) and fdatasync(2) cost
 * SLOWSYNC_MS milliseconds more, like a disk whose cache flush takes that long.
 *
 * Used by `bench/acceptance.py --flush-delay-ms N` to compare the servers where
 * durability, not CPU, is the bottleneck (a VM's virtual disk often flushes in well
 * under a millisecond; a SATA SSD without power-loss protection takes milliseconds, a
 * spinning disk about ten).
 *
 * Flushes are shared as the block layer shares them: a caller waits for the next
 * flush that *starts* after its call; callers arriving while one is in progress all
 * ride on the following one.  So concurrent fsyncs are cheap and serial ones are not,
 * which is what batching (group commit) is meant to exploit.
 *
 * Build: cc -O2 -shared -fPIC -o slowsync.so slowsync.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
static unsigned long started, completed;
static int busy;

static void flush_delay(void)
{
    const char *env = getenv("SLOWSYNC_MS");
    double ms = env ? atof(env) : 5.0;
    if (ms <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - 1000.0 * (double)ts.tv_sec) * 1e6);

    pthread_mutex_lock(&lock);
    unsigned long target = started + 1; /* a flush that starts after this call */
    while (completed < target) {
        if (!busy) {
            busy = 1;
            unsigned long mine = ++started;
            pthread_mutex_unlock(&lock);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&lock);
            busy = 0;
            completed = mine;
            pthread_cond_broadcast(&finished);
        } else {
            pthread_cond_wait(&finished, &lock);
        }
    }
    pthread_mutex_unlock(&lock);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int rc = real(fd);
    flush_delay();
    return rc;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int rc = real(fd);
    flush_delay();
    return rc;
}
