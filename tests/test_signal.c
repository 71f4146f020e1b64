/* Tests of mp_signal: each case runs in a child process of its own (the module's state and
 * its thread are per process).
 *   - the hazard it exists for: the cpu backend's linear backward (oneDNN GEMM) on two
 *     OpenMP threads under a SIGUSR1 every 50 us, the stop request armed, survives and
 *     records the signal (with a handler on the computing threads instead it dies in free()
 *     or on SIGSEGV within a second: the CI failure of test_pipeline);
 *   - before mp_signal_catch_stop a signal keeps its old fate: SIGTERM's default action ends
 *     the process on SIGTERM; one the launcher ignored does nothing; one the launcher had
 *     blocked is held and becomes the stop request when it is armed;
 *   - after it, both signals are stop requests, and the thread that called init (and every
 *     thread it makes) has them blocked. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_backend.h"
#include "mp_signal.h"
#include "mp_test.h"

enum { CHILD_OK = 0, CHILD_FAILED = 3, CHILD_SKIP = 77 };

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* wait up to 5 s for the stop request to become sig */
static bool wait_stop(int sig) {
  for (int i = 0; i < 500 && mp_signal_stop() != sig; i++) sleep_ms(10);
  return mp_signal_stop() == sig;
}

/* Run fn in a child; its wait status. */
static int in_child(int (*fn)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(fn());
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  return st;
}

static void expect_ok(int st) {
  if (WIFEXITED(st) && WEXITSTATUS(st) == CHILD_SKIP) skip();
  if (WIFSIGNALED(st)) fail_msg("the child died on signal %d", WTERMSIG(st));
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), CHILD_OK);
}

/* ---- the hazard: oneDNN's GEMM under a stream of SIGUSR1 ------------------------------ */
static int gemm_under_signals(void) {
  mp_signal_init();
  mp_signal_catch_stop();
  char err[256];
  mp_backend *be = mp_backend_create("cpu", err, sizeof err);
  if (!be) {
    fprintf(stderr, "skipped: no cpu backend in this build (%s)\n", err);
    return CHILD_SKIP;
  }
  /* the classifier's 512 -> 512 layer at batch 32: x 32x512, W 512x512, dy 32x512 */
  enum { N = 32, IN = 512, OUT = 512 };
  float *x = malloc(sizeof(float) * N * IN), *w = malloc(sizeof(float) * OUT * IN), *dy = malloc(sizeof(float) * N * OUT);
  float *dx = malloc(sizeof(float) * N * IN), *dw = malloc(sizeof(float) * OUT * IN), *db = malloc(sizeof(float) * OUT);
  for (int i = 0; i < N * IN; i++) x[i] = (float)(i % 7) - 3.0f;
  for (int i = 0; i < OUT * IN; i++) w[i] = (float)(i % 5) * 0.01f;
  for (int i = 0; i < N * OUT; i++) dy[i] = (float)(i % 3) * 0.5f + 0.25f;
  pid_t me = getpid(), gun = fork();
  if (gun == 0) /* a SIGUSR1 every 50 us until the computing process is gone */
    for (;;) {
      if (kill(me, SIGUSR1) != 0) _exit(0);
      usleep(50);
    }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int it = 0;
  for (double el = 0; it < 20000 && el < 2.0; it++) {
    be->iface->linear_backward(be, x, w, dy, dx, dw, db, N, IN, OUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  }
  kill(gun, SIGKILL);
  waitpid(gun, NULL, 0);
  /* the result is still the GEMM's: dx[0] = sum_o dy[0][o] w[o][0] */
  double want = 0;
  for (int o = 0; o < OUT; o++) want += (double)dy[o] * w[(size_t)o * IN];
  bool right = fabs(dx[0] - want) < 1e-3 * (1 + fabs(want));
  fprintf(stderr, "%d linear backwards under SIGUSR1 every 50 us; stop request %d; dx[0] %g (want %g)\n", it,
          mp_signal_stop(), dx[0], want);
  mp_backend_free(be);
  free(x), free(w), free(dy), free(dx), free(dw), free(db);
  return right && mp_signal_stop() == SIGUSR1 ? CHILD_OK : CHILD_FAILED;
}

static void test_gemm_under_signals(void **state) {
  (void)state;
  expect_ok(in_child(gemm_under_signals));
}

/* ---- before mp_signal_catch_stop ------------------------------------------------------ */
static int term_before_catch(void) {
  mp_signal_init();
  kill(getpid(), SIGTERM);
  sleep_ms(5000);
  return CHILD_OK; /* wrong: SIGTERM's default action should have ended the process */
}

static void test_default_before_catch(void **state) {
  (void)state;
  int st = in_child(term_before_catch);
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGTERM);
}

static int ignored_before_catch(void) {
  signal(SIGUSR1, SIG_IGN); /* as a launcher (nohup-like) may leave it */
  mp_signal_init();
  kill(getpid(), SIGUSR1);
  sleep_ms(200);
  if (mp_signal_stop() != 0) return CHILD_FAILED; /* ignored, as before */
  mp_signal_catch_stop();
  kill(getpid(), SIGUSR1); /* caught now */
  return wait_stop(SIGUSR1) ? CHILD_OK : CHILD_FAILED;
}

static void test_ignored_before_catch(void **state) {
  (void)state;
  expect_ok(in_child(ignored_before_catch));
}

static int held_from_launcher(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &s, NULL); /* a launcher that blocked it; one arrives */
  kill(getpid(), SIGUSR1);
  mp_signal_init();
  sleep_ms(200);
  if (mp_signal_stop() != 0) return CHILD_FAILED; /* held: nothing caught it yet */
  mp_signal_catch_stop();                         /* taken now */
  return wait_stop(SIGUSR1) ? CHILD_OK : CHILD_FAILED;
}

static void test_held_from_launcher(void **state) {
  (void)state;
  expect_ok(in_child(held_from_launcher));
}

/* ---- after mp_signal_catch_stop --------------------------------------------------------- */
static void *mask_of_new_thread(void *arg) {
  pthread_sigmask(SIG_BLOCK, NULL, (sigset_t *)arg);
  return NULL;
}

static int caught(void) {
  mp_signal_init();
  mp_signal_catch_stop();
  mp_signal_catch_stop(); /* idempotent */
  sigset_t mine, theirs;
  pthread_sigmask(SIG_BLOCK, NULL, &mine);
  pthread_t t;
  if (pthread_create(&t, NULL, mask_of_new_thread, &theirs) != 0) return CHILD_FAILED;
  pthread_join(t, NULL);
  if (!sigismember(&mine, SIGTERM) || !sigismember(&mine, SIGUSR1) || !sigismember(&theirs, SIGTERM) ||
      !sigismember(&theirs, SIGUSR1))
    return CHILD_FAILED;
  if (mp_signal_stop() != 0) return CHILD_FAILED;
  kill(getpid(), SIGTERM);
  if (!wait_stop(SIGTERM)) return CHILD_FAILED;
  kill(getpid(), SIGUSR1); /* the latest one is recorded */
  return wait_stop(SIGUSR1) ? CHILD_OK : CHILD_FAILED;
}

static void test_caught(void **state) {
  (void)state;
  expect_ok(in_child(caught));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm_under_signals), cmocka_unit_test(test_default_before_catch),
      cmocka_unit_test(test_ignored_before_catch), cmocka_unit_test(test_held_from_launcher),
      cmocka_unit_test(test_caught)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
