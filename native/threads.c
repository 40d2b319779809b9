/*
 * A persistent thread pool: workers are created once (and when setThreads grows the pool) and wait
 * for work. Between calls a worker spins briefly (a forward pass issues products back to back), then
 * sleeps on a condition variable, so an idle process does not burn CPU.
 */
#define _GNU_SOURCE
#include "mka.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define MAX_THREADS 1024
/* How long an idle worker polls for the next job before sleeping. */
#define SPIN_NS 200000L

static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one pool_run at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int active = 1;   /* threads taking part in jobs, the caller included */
static int spawned = 0;  /* workers created (ids 1..spawned) */
/*
 * The current job's state word: generation (high 32 bits), a "closed" bit and the number of workers
 * that joined it. A worker joins by incrementing it while the job is open; the caller closes the job
 * when the tasks are all taken and then waits only for the workers that joined, so a worker the OS
 * has not scheduled yet (a busy machine) never delays a call: it finds the job closed and skips it.
 */
#define CLOSED (1ULL << 31)
static _Atomic unsigned long long state;
static atomic_long generation;
static atomic_long next_task;
static atomic_int finished; /* joined workers done with the current job */
static long job_tasks;
static task_fn job_fn;
static void *job_ctx;
static int job_threads;

static inline void cpu_relax(void) {
#if MKA_X86
  __builtin_ia32_pause();
#endif
}

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void drain(int thread) {
  for (;;) {
    long t = atomic_fetch_add_explicit(&next_task, 1, memory_order_relaxed);
    if (t >= job_tasks) break;
    job_fn(job_ctx, t, thread);
  }
}

typedef struct {
  int id;
  long seen; /* the generation current when the worker was created */
} worker_arg;

static void *worker(void *arg) {
  const int id = ((worker_arg *)arg)->id;
  long seen = ((worker_arg *)arg)->seen;
  free(arg);
  for (;;) {
    long start = now_ns(), g;
    int spins = 0;
    while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
      cpu_relax();
      if (++spins % 256 == 0 && now_ns() - start > SPIN_NS) {
        pthread_mutex_lock(&lock);
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) pthread_cond_wait(&wake, &lock);
        pthread_mutex_unlock(&lock);
        break;
      }
    }
    seen = g;
    unsigned long long st = atomic_load_explicit(&state, memory_order_acquire);
    int joined = 0;
    while ((long)(st >> 32) == (g & 0xffffffffL) && !(st & CLOSED) && (long)(st & (CLOSED - 1)) < job_threads - 1 && id < job_threads) {
      if (atomic_compare_exchange_weak_explicit(&state, &st, st + 1, memory_order_acq_rel, memory_order_acquire)) {
        joined = 1;
        break;
      }
    }
    if (!joined) continue;
    drain(id);
    atomic_fetch_add_explicit(&finished, 1, memory_order_release);
  }
  return NULL;
}

int pool_set_threads(int n) {
  if (n < 1 || n > MAX_THREADS) return -1;
  pthread_mutex_lock(&run_lock);
  while (spawned < n - 1) {
    pthread_t t;
    pthread_attr_t attr;
    worker_arg *arg = malloc(sizeof *arg);
    if (!arg) break;
    arg->id = spawned + 1;
    arg->seen = atomic_load(&generation);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, worker, arg);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      free(arg);
      break;
    }
    spawned++;
  }
  active = spawned + 1 < n ? spawned + 1 : n;
  pthread_mutex_unlock(&run_lock);
  return active == n ? 0 : -1;
}

int pool_threads(void) { return active; }

void pool_run(long ntasks, task_fn fn, void *ctx) {
  if (ntasks <= 0) return;
  pthread_mutex_lock(&run_lock);
  int threads = active;
  if (threads > ntasks) threads = (int)ntasks;
  if (threads <= 1) {
    for (long t = 0; t < ntasks; t++) fn(ctx, t, 0);
    pthread_mutex_unlock(&run_lock);
    return;
  }
  job_fn = fn;
  job_ctx = ctx;
  job_tasks = ntasks;
  job_threads = threads;
  atomic_store_explicit(&next_task, 0, memory_order_relaxed);
  atomic_store_explicit(&finished, 0, memory_order_relaxed);
  const long g = atomic_load_explicit(&generation, memory_order_relaxed) + 1;
  atomic_store_explicit(&state, (unsigned long long)(g & 0xffffffffL) << 32, memory_order_release);
  pthread_mutex_lock(&lock);
  atomic_store_explicit(&generation, g, memory_order_release);
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  drain(0);
  /* close the job: from now on no worker joins; wait for those that did */
  unsigned long long st = atomic_fetch_or_explicit(&state, CLOSED, memory_order_acq_rel);
  const int joined = (int)(st & (CLOSED - 1));
  int spins = 0;
  while (atomic_load_explicit(&finished, memory_order_acquire) < joined) {
    cpu_relax();
    if (++spins > 4096) sched_yield();
  }
  pthread_mutex_unlock(&run_lock);
}

typedef struct {
  void *p;
  size_t cap;
} slot_t;
static __thread slot_t slots[5];

void *scratch(int slot, size_t bytes) {
  slot_t *s = &slots[slot];
  if (s->cap < bytes) {
    free(s->p);
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    s->p = aligned_alloc(64, cap);
    s->cap = s->p ? cap : 0;
  }
  return s->p;
}
