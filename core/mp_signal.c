/* mp_signal — SIGTERM / SIGUSR1 taken by one sigwait thread (see mp_signal.h).
 *
 * Why not a handler: the kernel pushes a handler's frame below the interrupted thread's
 * stack pointer, and oneDNN's JIT GEMM kernels use rsp as a pointer into a heap buffer of
 * theirs while they run (valgrind: "client switching stacks", rsp at the start of a 16 KB
 * posix_memalign block inside dnnl_sgemm).  A frame pushed there overwrites heap memory:
 * a rank stopped by SIGUSR1 in the middle of a training step died in free() with
 * "corrupted size vs. prev_size while consolidating" (CI, test_pipeline), and a plain
 * dnnl_sgemm('N','N', 32, 512, 512) loop under a SIGUSR1 every 50 us dies in every run
 * (in free(), or on SIGSEGV).  An alternate signal stack (sigaltstack, SA_ONSTACK) is per
 * thread and cannot reach OpenMP's worker threads, which run the same kernels: with two
 * threads that loop still dies.  Blocked in every thread and taken by sigwait on a thread of our own, the
 * signals interrupt nothing (and no read, write or socket call of HDF5 or MPI returns EINTR).
 *
 * Before mp_signal_catch_stop the thread gives each signal the fate it had without it:
 * the default action (it unblocks the signal in itself and sends it to itself with the
 * default disposition, so the process ends on that signal as before), nothing where the
 * launcher ignored it, or held for catch_stop where the launcher had it blocked. */
#include "mp_signal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "mp_check.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_init, g_armed;
static int g_held;                                  /* taken before arming, launcher-blocked */
static sigset_t g_launch_blocked, g_launch_ignored; /* the launcher's mask and SIG_IGNs */
static atomic_int g_stop;

static sigset_t stop_set(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTERM);
  sigaddset(&s, SIGUSR1);
  return s;
}

/* The default action of sig, on this thread: the process ends on the signal. */
static void die_by(int sig) {
  struct sigaction dfl = {0};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  pthread_kill(pthread_self(), sig); /* delivered on return: terminate */
  _exit(128 + sig);                  /* not reached */
}

static void *waiter(void *arg) {
  (void)arg;
  const sigset_t set = stop_set();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    bool die = false;
    pthread_mutex_lock(&g_mu);
    if (g_armed)
      atomic_store(&g_stop, sig);
    else if (sigismember(&g_launch_blocked, sig))
      g_held = sig;
    else if (!sigismember(&g_launch_ignored, sig))
      die = true;
    pthread_mutex_unlock(&g_mu);
    if (die) die_by(sig);
  }
  return NULL;
}

/* Only where mp_signal_init ran after other threads had started: those threads may not
 * block the signals, and one may receive it here (async-signal-safe: a lock-free store). */
static void on_stray(int sig) { atomic_store(&g_stop, sig); }

void mp_signal_init(void) {
  pthread_mutex_lock(&g_mu);
  if (g_init) {
    pthread_mutex_unlock(&g_mu);
    return;
  }
  const sigset_t set = stop_set();
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &set, &old);
  sigemptyset(&g_launch_blocked);
  sigemptyset(&g_launch_ignored);
  const int sigs[2] = {SIGTERM, SIGUSR1};
  for (int i = 0; i < 2; i++) {
    struct sigaction cur;
    if (sigismember(&old, sigs[i])) sigaddset(&g_launch_blocked, sigs[i]);
    if (sigaction(sigs[i], NULL, &cur) == 0 && cur.sa_handler == SIG_IGN) sigaddset(&g_launch_ignored, sigs[i]);
  }
  pthread_attr_t at;
  pthread_t t;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 256 * 1024);
  int rc = pthread_create(&t, &at, waiter, NULL);
  pthread_attr_destroy(&at);
  MP_CHECK(rc == 0, "cannot start the thread that takes SIGTERM and SIGUSR1 (error %d)", rc);
  g_init = true;
  pthread_mutex_unlock(&g_mu);
}

void mp_signal_catch_stop(void) {
  mp_signal_init();
  pthread_mutex_lock(&g_mu);
  if (!g_armed) {
    g_armed = true;
    if (g_held) atomic_store(&g_stop, g_held);
    struct sigaction sa = {0};
    sa.sa_handler = on_stray;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
  }
  pthread_mutex_unlock(&g_mu);
}

int mp_signal_stop(void) { return atomic_load(&g_stop); }
