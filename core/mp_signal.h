/* mp_signal — SIGTERM and SIGUSR1 (Slurm's time-limit and pre-emption warnings) as a stop
 * request that long runs poll (train, gan train, the sweep, the experiment, the pipeline).
 *
 * No thread that computes ever receives them: mp_signal_init, called first in main before
 * MPI, OpenMP or CUDA start a thread, blocks both (every thread made later inherits the
 * mask) and starts one thread that takes them with sigwait.  A signal handler would run on
 * whatever thread the kernel picks, at that thread's stack pointer, and oneDNN's JIT GEMM
 * kernels point it into a heap buffer of theirs while they run: the signal frame then
 * overwrites the heap (see mp_signal.c). */
#ifndef MP_SIGNAL_H
#define MP_SIGNAL_H

/* Block SIGTERM and SIGUSR1 in the calling thread and start the thread that takes them.
 * Call it before any other thread exists (first in main); called later, threads made before
 * it keep the signals unblocked (mp_signal_catch_stop then catches them there with a
 * handler).  Until mp_signal_catch_stop, a signal does what it would have done without
 * this module: its default action (the process ends on it), or nothing where the launcher
 * had it ignored; one the launcher had blocked is held for mp_signal_catch_stop, as its
 * mask would have held it.  Idempotent; fatal if the thread cannot start. */
void mp_signal_init(void);

/* From now on SIGTERM and SIGUSR1 set the stop request instead (one held from before
 * counts now).  The commands that train call it before MPI starts (a signal during
 * start-up is then a stop, not a killed rank); mp_train_run, the GAN trainer, the sweep and
 * the experiment call it too.  The request stays set: one that comes between two runs stops
 * the next.  Runs mp_signal_init if nothing did.  Idempotent. */
void mp_signal_catch_stop(void);

/* The signal that asked this process to stop (SIGTERM or SIGUSR1), 0 if none. */
int mp_signal_stop(void);

#endif
