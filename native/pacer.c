/*
 * voxpipe's native pacer: one thread that sends UDP datagrams at given CLOCK_MONOTONIC times.
 *
 * The JavaScript side (core/net/_pacer.ts) hands it each packet a few ms before the packet is due, with its due
 * time and the socket to send it from; the thread sleeps until shortly before the earliest due time, spins the rest
 * (within a CPU budget), and sends. What the JavaScript thread does meanwhile (garbage collection, other calls'
 * work, a late wake-up) no longer moves the packet on the wire, as long as it hands the packet over before its due
 * time.
 *
 * Built by scripts/setup.sh (cc -O2 -shared -fPIC -pthread) into native/build/libvoxpacer.so. Every function is
 * safe to call from any thread. Nothing here allocates after vp_pacer_new.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#define VP_MAX_DATA 1500 /* larger datagrams are refused (the caller sends them itself) */
#define VP_MAX_ADDR 28   /* sockaddr_in6 */
#define VP_RESERVE_NS 5000000LL /* spin credit kept at most: 5 ms */

typedef struct {
  int64_t due;
  uint64_t seq;
  int32_t fd;
  uint32_t len;
  uint32_t alen;
  uint8_t addr[VP_MAX_ADDR];
  uint8_t data[VP_MAX_DATA];
} vp_packet;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t wake; /* a new earliest packet, or stop */
  pthread_cond_t idle; /* a send outside the lock finished */
  pthread_t thread;
  vp_packet *slots;
  uint32_t *heap; /* slot indices, min-heap by (due, seq) */
  uint32_t *free_list;
  uint32_t cap, count, nfree;
  uint64_t seq;
  int running;
  int32_t busy_fd; /* the socket a send outside the lock is using, or -1 */
  int64_t spin_ns;
  double budget;
  double credit_ns;
  int64_t earned_at;
  /* statistics */
  uint64_t sent, errors, refused, spins;
  int64_t spun_ns, late_max_ns, late_sum_ns;
  int32_t last_errno;
} vp_pacer;

static int64_t vp_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}


static int before(const vp_pacer *p, uint32_t a, uint32_t b) {
  const vp_packet *x = &p->slots[a], *y = &p->slots[b];
  return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void sift_up(vp_pacer *p, uint32_t i) {
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!before(p, p->heap[i], p->heap[parent])) break;
    uint32_t t = p->heap[i];
    p->heap[i] = p->heap[parent];
    p->heap[parent] = t;
    i = parent;
  }
}

static void sift_down(vp_pacer *p, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < p->count && before(p, p->heap[l], p->heap[m])) m = l;
    if (r < p->count && before(p, p->heap[r], p->heap[m])) m = r;
    if (m == i) return;
    uint32_t t = p->heap[i];
    p->heap[i] = p->heap[m];
    p->heap[m] = t;
    i = m;
  }
}

/* Removes heap position i; returns its slot. */
static uint32_t take(vp_pacer *p, uint32_t i) {
  uint32_t slot = p->heap[i];
  p->count--;
  if (i < p->count) {
    p->heap[i] = p->heap[p->count];
    sift_down(p, i);
    sift_up(p, i);
  }
  return slot;
}

static void abs_time(struct timespec *ts, int64_t ns) {
  ts->tv_sec = ns / 1000000000LL;
  ts->tv_nsec = ns % 1000000000LL;
}

static void *run(void *arg) {
  vp_pacer *p = arg;
  /* Timed waits end within 1 µs of their time instead of the default 50 µs of slack (best effort). */
  prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
  pthread_mutex_lock(&p->mu);
  while (p->running) {
    if (p->count == 0) {
      pthread_cond_wait(&p->wake, &p->mu);
      continue;
    }
    int64_t due = p->slots[p->heap[0]].due;
    int64_t now = vp_now_ns();
    if (now < due) {
      /* Earn spin credit for the time passed, up to the reserve. */
      p->credit_ns += (double)(now - p->earned_at) * p->budget;
      if (p->credit_ns > VP_RESERVE_NS) p->credit_ns = VP_RESERVE_NS;
      p->earned_at = now;
      int64_t left = due - now;
      int spin = p->spin_ns > 0 && left <= p->spin_ns && p->credit_ns >= (double)left;
      if (!spin) {
        /* Sleep until the spin window opens (or until the due time, without credit); a new earlier packet wakes it. */
        int64_t until = p->spin_ns > 0 && p->credit_ns >= (double)p->spin_ns ? due - p->spin_ns : due;
        if (until <= now) until = due;
        struct timespec ts;
        abs_time(&ts, until);
        pthread_cond_timedwait(&p->wake, &p->mu, &ts);
        continue;
      } else {
        /* Spin without the lock, at most 50 µs at a time, then look again (an earlier packet may have come). */
        pthread_mutex_unlock(&p->mu);
        int64_t stop = due < now + 50000 ? due : now + 50000, t;
        do t = vp_now_ns(); while (t < stop);
        pthread_mutex_lock(&p->mu);
        p->spins++;
        p->spun_ns += t - now;
        p->credit_ns -= (double)(t - now);
        continue;
      }
    }
    /* Due: send it outside the lock. */
    uint32_t slot = take(p, 0);
    vp_packet *k = &p->slots[slot];
    p->busy_fd = k->fd;
    pthread_mutex_unlock(&p->mu);
    int64_t late = vp_now_ns() - k->due;
    ssize_t r;
    do r = sendto(k->fd, k->data, k->len, MSG_DONTWAIT, (const struct sockaddr *)k->addr, k->alen);
    while (r < 0 && errno == EINTR);
    int e = r < 0 ? errno : 0;
    pthread_mutex_lock(&p->mu);
    if (r < 0) {
      p->errors++;
      p->last_errno = e;
    } else {
      p->sent++;
      if (late > p->late_max_ns) p->late_max_ns = late;
      if (late > 0) p->late_sum_ns += late;
    }
    p->free_list[p->nfree++] = slot;
    p->busy_fd = -1;
    pthread_cond_broadcast(&p->idle);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/*
 * A pacer with room for `cap` packets, spinning the last `spin_ms` before a due time within `budget` of a core
 * (0..1; 0 never spins). Returns NULL when memory or the thread cannot be had.
 */
vp_pacer *vp_pacer_new(uint32_t cap, double spin_ms, double budget) {
  int64_t spin_ns = (int64_t)(spin_ms * 1e6);
  if (cap == 0) return NULL;
  vp_pacer *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->slots = calloc(cap, sizeof *p->slots);
  p->heap = calloc(cap, sizeof *p->heap);
  p->free_list = calloc(cap, sizeof *p->free_list);
  if (!p->slots || !p->heap || !p->free_list) goto fail;
  p->cap = cap;
  for (uint32_t i = 0; i < cap; i++) p->free_list[i] = cap - 1 - i;
  p->nfree = cap;
  p->running = 1;
  p->busy_fd = -1;
  p->spin_ns = spin_ns > 0 ? spin_ns : 0;
  p->budget = budget > 0 ? (budget < 1 ? budget : 1) : 0;
  p->earned_at = vp_now_ns();
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, &ca);
  pthread_cond_init(&p->idle, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&p->thread, NULL, run, p) != 0) goto fail;
  return p;
fail:
  free(p->slots);
  free(p->heap);
  free(p->free_list);
  free(p);
  return NULL;
}

/*
 * Queues one datagram for `fd` at `due_ms` (CLOCK_MONOTONIC, in ms: a double, as JavaScript numbers are; exact to
 * well under a µs for centuries of uptime). Returns 0, or -1 when the queue is full, -2 when the datagram or the
 * address is too long (the caller sends those itself).
 */
int32_t vp_pacer_post(vp_pacer *p, int32_t fd, double due_ms, const uint8_t *data, uint32_t len, const uint8_t *addr,
                      uint32_t alen) {
  int64_t due_ns = (int64_t)(due_ms * 1e6);
  if (len > VP_MAX_DATA || alen > VP_MAX_ADDR) return -2;
  pthread_mutex_lock(&p->mu);
  if (p->nfree == 0) {
    p->refused++;
    pthread_mutex_unlock(&p->mu);
    return -1;
  }
  uint32_t slot = p->free_list[--p->nfree];
  vp_packet *k = &p->slots[slot];
  k->due = due_ns;
  k->seq = p->seq++;
  k->fd = fd;
  k->len = len;
  k->alen = alen;
  memcpy(k->data, data, len);
  memcpy(k->addr, addr, alen);
  p->heap[p->count] = slot;
  sift_up(p, p->count++);
  if (p->heap[0] == slot) pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

/* Packets queued for `fd` (any socket when fd < 0), counting one being sent. */
uint32_t vp_pacer_pending(vp_pacer *p, int32_t fd) {
  pthread_mutex_lock(&p->mu);
  uint32_t n = 0;
  for (uint32_t i = 0; i < p->count; i++)
    if (fd < 0 || p->slots[p->heap[i]].fd == fd) n++;
  if (p->busy_fd >= 0 && (fd < 0 || p->busy_fd == fd)) n++;
  pthread_mutex_unlock(&p->mu);
  return n;
}

/*
 * Drops every packet queued for `fd` and waits for a send on it in progress to finish: afterwards the pacer holds no
 * reference to `fd`, which may then be closed. Returns the packets dropped.
 */
uint32_t vp_pacer_forget(vp_pacer *p, int32_t fd) {
  pthread_mutex_lock(&p->mu);
  uint32_t kept = 0, dropped = 0;
  for (uint32_t i = 0; i < p->count; i++) {
    uint32_t slot = p->heap[i];
    if (p->slots[slot].fd == fd) {
      p->free_list[p->nfree++] = slot;
      dropped++;
    } else {
      p->heap[kept++] = slot;
    }
  }
  if (dropped > 0) {
    p->count = kept;
    for (uint32_t i = kept / 2; i-- > 0;) sift_down(p, i);
  }
  while (p->busy_fd == fd) pthread_cond_wait(&p->idle, &p->mu);
  pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&p->mu);
  return dropped;
}

/*
 * Statistics into out[0..8]: sent, send errors, refused (queue full), spin steps (<= 50 µs each), ms spun, the largest lateness of a send
 * (ms after its due time), the sum of lateness (ms), the last send errno, packets queued.
 */
void vp_pacer_stats(vp_pacer *p, double *out) {
  pthread_mutex_lock(&p->mu);
  out[0] = (double)p->sent;
  out[1] = (double)p->errors;
  out[2] = (double)p->refused;
  out[3] = (double)p->spins;
  out[4] = (double)p->spun_ns / 1e6;
  out[5] = (double)p->late_max_ns / 1e6;
  out[6] = (double)p->late_sum_ns / 1e6;
  out[7] = p->last_errno;
  out[8] = p->count;
  pthread_mutex_unlock(&p->mu);
}

/* Stops the thread (packets still queued are dropped) and frees the pacer. */
void vp_pacer_free(vp_pacer *p) {
  pthread_mutex_lock(&p->mu);
  p->running = 0;
  pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->idle);
  free(p->slots);
  free(p->heap);
  free(p->free_list);
  free(p);
}
