/*
 * linkemu: a user-space wide-area link between two TUN devices, because this kernel has no
 * netem. Real TCP and UDP stacks run on both ends (in two network namespaces); only the path in
 * between is emulated.
 *
 *   linkemu --tun-client NAME --tun-server NAME [--rate-mbit R] [--rtt-ms T] [--loss L]
 *           [--queue-bytes Q] [--seed S] [--shared] [--link N:RATE:RTT:LOSS[:QUEUE]]...
 *
 * It creates both TUN devices (IFF_TUN | IFF_NO_PI) in the namespace it starts in and prints
 * "ready <client-tun> <server-tun>"; the caller then moves each device into its namespace
 * (`ip link set DEV netns NS` keeps our fd working) and configures addresses and routes.
 *
 * Packets read from the client TUN go "up" and are written to the server TUN; the others come
 * "down". Every IPv4 packet, fragments included (they are just packets), belongs to the link of
 * its server address: the destination going up, the source coming down. A server address
 * 198.18.1.N has link N; any other address (or every address with --shared, one path for all)
 * has link 0. Each link and direction, in order:
 *   1. blackhole (runtime command): drop;
 *   2. random loss with its own seeded PRNG: drop;
 *   3. serialisation at the link rate, free_at = max(free_at, now) + len*8/rate; if the
 *      backlog (bytes not yet serialised, (free_at - now) * rate) plus this packet would exceed
 *      the queue limit, tail drop;
 *   4. release at free_at + RTT/2, first in first out (release times are monotonic per link, so
 *      a ring buffer is the whole scheduler). A blackhole also drops packets on release, as a
 *      cut cable loses what is on it.
 *
 * The loop sleeps in ppoll until a TUN or stdin is readable or the next release is due
 * (CLOCK_MONOTONIC, ns timeouts, 100 us timer slack): no busy waiting, since the emulator
 * shares two cores with the endpoints it measures.
 *
 * Commands on stdin, one per line, each answered by one line ("ok ..." or "error ..."):
 *   blackhole <ms>   drop everything both ways for that long ("event blackhole off" at the end)
 *   loss <pct>       set random loss on every link, both directions (percent; "3" or "3%")
 *   stats            counters: "stats begin", one "link ..." line per link, "stats end ..."
 *   quit             print the counters and exit (EOF on stdin and SIGTERM do the same)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define NLINKS 256
#define UP 0
#define DOWN 1
/* Reads per fd per wake-up: bounded so that one busy direction cannot starve releases. */
#define READ_BATCH 256

typedef struct Pkt {
  uint64_t due;
  uint32_t len;
  unsigned char data[];
} Pkt;

typedef struct Link {
  /* configuration */
  double rate_bps; /* 0: unlimited */
  uint64_t delay_ns; /* one way: RTT/2 */
  double loss;
  uint64_t queue_bytes;
  /* state */
  uint64_t free_at;
  Pkt **ring;
  size_t cap, head, count;
  uint64_t rng;
  int active;
  /* counters */
  uint64_t fwd_pkts, fwd_bytes, drop_loss, drop_queue, drop_blackhole, drop_write;
} Link;

static Link links[2][NLINKS];
static Link *active[2 * NLINKS];
static int nactive;
static int fds[2]; /* [UP] reads client tun, writes server tun; [DOWN] the reverse */
static uint64_t blackhole_until;
static uint64_t other_pkts; /* not IPv4: dropped */
static int shared_link;
static volatile sig_atomic_t stop_signal;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64: tiny, seedable, good enough for loss decisions. */
static uint64_t next_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double uniform(uint64_t *s) { return (double)(next_rand(s) >> 11) * (1.0 / 9007199254740992.0); }

static void die(const char *what) {
  fprintf(stderr, "linkemu: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(const char *msg) {
  fprintf(stderr,
          "linkemu: %s\nusage: linkemu --tun-client NAME --tun-server NAME [--rate-mbit R] "
          "[--rtt-ms T] [--loss L|P%%] [--queue-bytes Q] [--seed S] [--shared] "
          "[--link N:RATE:RTT:LOSS[:QUEUE]]...\n",
          msg);
  exit(2);
}

static int open_tun(char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  snprintf(name, IFNAMSIZ, "%s", ifr.ifr_name);
  return fd;
}

/* "0.03" is a fraction, "3%" a percentage; percent_default makes a bare "3" mean 3 %. */
static int parse_loss(const char *s, int percent_default, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s) return -1;
  if (*end == '%') {
    v /= 100;
    end++;
  } else if (percent_default) {
    v /= 100;
  }
  if (*end != '\0' || v < 0 || v > 1) return -1;
  *out = v;
  return 0;
}

static void label(int idx, char *buf, size_t n) {
  if (shared_link) snprintf(buf, n, "all");
  else if (idx == 0) snprintf(buf, n, "other");
  else snprintf(buf, n, "198.18.1.%d", idx);
}

static void print_stats(void) {
  uint64_t now = now_ns();
  printf("stats begin\n");
  for (int i = 0; i < nactive; i++) {
    Link *l = active[i];
    int dir = l >= links[DOWN] ? DOWN : UP;
    char name[32];
    label((int)(l - links[dir]), name, sizeof name);
    printf("link %s %s fwd_pkts=%llu fwd_bytes=%llu drop_loss=%llu drop_queue=%llu "
           "drop_blackhole=%llu drop_write=%llu queued=%zu\n",
           name, dir == UP ? "up" : "down", (unsigned long long)l->fwd_pkts,
           (unsigned long long)l->fwd_bytes, (unsigned long long)l->drop_loss,
           (unsigned long long)l->drop_queue, (unsigned long long)l->drop_blackhole,
           (unsigned long long)l->drop_write, l->count);
  }
  uint64_t left = blackhole_until > now ? (blackhole_until - now) / 1000000 : 0;
  printf("stats end blackhole_left_ms=%llu other=%llu\n", (unsigned long long)left,
         (unsigned long long)other_pkts);
  fflush(stdout);
}

static void push(Link *l, Pkt *p) {
  if (l->count == l->cap) {
    size_t ncap = l->cap ? l->cap * 2 : 1024;
    Pkt **r = malloc(ncap * sizeof *r);
    if (!r) die("malloc");
    for (size_t i = 0; i < l->count; i++) r[i] = l->ring[(l->head + i) % l->cap];
    free(l->ring);
    l->ring = r;
    l->cap = ncap;
    l->head = 0;
  }
  l->ring[(l->head + l->count) % l->cap] = p;
  l->count++;
}

static void enqueue(int dir, const unsigned char *buf, size_t len, uint64_t now) {
  if (len < 20 || (buf[0] >> 4) != 4) {
    other_pkts++;
    return;
  }
  const unsigned char *a = buf + (dir == UP ? 16 : 12); /* server address: dst up, src down */
  int idx = (!shared_link && a[0] == 198 && a[1] == 18 && a[2] == 1) ? a[3] : 0;
  Link *l = &links[dir][idx];
  if (!l->active) {
    l->active = 1;
    active[nactive++] = l;
  }
  if (now < blackhole_until) {
    l->drop_blackhole++;
    return;
  }
  if (l->loss > 0 && uniform(&l->rng) < l->loss) {
    l->drop_loss++;
    return;
  }
  uint64_t due = now;
  if (l->rate_bps > 0) {
    uint64_t start = l->free_at > now ? l->free_at : now;
    double backlog = (double)(start - now) * l->rate_bps / 8e9;
    if (backlog > 0 && backlog + (double)len > (double)l->queue_bytes) {
      l->drop_queue++;
      return;
    }
    l->free_at = start + (uint64_t)((double)len * 8e9 / l->rate_bps);
    due = l->free_at;
  }
  Pkt *p = malloc(sizeof *p + len);
  if (!p) die("malloc");
  p->due = due + l->delay_ns;
  p->len = (uint32_t)len;
  memcpy(p->data, buf, len);
  push(l, p);
}

/* Releases what is due; returns the earliest future release time (UINT64_MAX: none). */
static uint64_t release_due(uint64_t now) {
  uint64_t next = UINT64_MAX;
  for (int i = 0; i < nactive; i++) {
    Link *l = active[i];
    int out = l >= links[DOWN] ? fds[UP] : fds[DOWN]; /* up packets go out the server tun */
    while (l->count) {
      Pkt *p = l->ring[l->head];
      if (p->due > now) {
        if (p->due < next) next = p->due;
        break;
      }
      l->head = (l->head + 1) % l->cap;
      l->count--;
      if (now < blackhole_until) {
        l->drop_blackhole++;
      } else if (write(out, p->data, p->len) == (ssize_t)p->len) {
        l->fwd_pkts++;
        l->fwd_bytes += p->len;
      } else {
        l->drop_write++; /* device down or gone: the packet is lost, like on a real link */
      }
      free(p);
    }
  }
  return next;
}

static char cmdbuf[4096];
static size_t cmdlen;

/* Returns 1 when the emulator should exit. */
static int command(char *line, uint64_t now) {
  char verb[32];
  double arg = 0;
  char argstr[64] = "";
  int n = sscanf(line, "%31s %63s", verb, argstr);
  if (n < 1) return 0;
  if (strcmp(verb, "quit") == 0) {
    printf("ok quit\n");
    return 1;
  } else if (strcmp(verb, "stats") == 0) {
    print_stats();
  } else if (strcmp(verb, "blackhole") == 0 && n == 2 && sscanf(argstr, "%lf", &arg) == 1 &&
             arg >= 0) {
    blackhole_until = now + (uint64_t)(arg * 1e6);
    printf("ok blackhole %s\n", argstr);
  } else if (strcmp(verb, "loss") == 0 && n == 2 && parse_loss(argstr, 1, &arg) == 0) {
    for (int d = 0; d < 2; d++)
      for (int i = 0; i < NLINKS; i++) links[d][i].loss = arg;
    printf("ok loss %g%%\n", arg * 100);
  } else {
    printf("error unknown command: %s\n", line);
  }
  fflush(stdout);
  return 0;
}

/* Returns 1 on EOF or quit. */
static int read_stdin(uint64_t now) {
  ssize_t r = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
  if (r == 0) return 1; /* our controller is gone: so are we */
  if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : 1;
  cmdlen += (size_t)r;
  char *start = cmdbuf, *nl;
  while ((nl = memchr(start, '\n', cmdlen - (size_t)(start - cmdbuf)))) {
    *nl = '\0';
    if (command(start, now)) return 1;
    start = nl + 1;
  }
  cmdlen -= (size_t)(start - cmdbuf);
  memmove(cmdbuf, start, cmdlen);
  if (cmdlen == sizeof cmdbuf - 1) cmdlen = 0; /* an absurd line: forget it */
  return 0;
}

static void on_signal(int sig) { stop_signal = sig; }

int main(int argc, char **argv) {
  char tun_client[IFNAMSIZ] = "", tun_server[IFNAMSIZ] = "";
  double rate_mbit = 100, rtt_ms = 50, loss = 0, queue_bytes = -1;
  uint64_t seed = 1;
  struct {
    int idx;
    double rate, rtt, loss, queue;
  } over[NLINKS];
  int nover = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--shared") == 0) {
      shared_link = 1;
      continue;
    }
    if (!v) usage("missing value");
    i++;
    char *end;
    if (strcmp(a, "--tun-client") == 0) snprintf(tun_client, IFNAMSIZ, "%s", v);
    else if (strcmp(a, "--tun-server") == 0) snprintf(tun_server, IFNAMSIZ, "%s", v);
    else if (strcmp(a, "--rate-mbit") == 0) rate_mbit = strtod(v, &end);
    else if (strcmp(a, "--rtt-ms") == 0) rtt_ms = strtod(v, &end);
    else if (strcmp(a, "--queue-bytes") == 0) queue_bytes = strtod(v, &end);
    else if (strcmp(a, "--seed") == 0) seed = strtoull(v, &end, 10);
    else if (strcmp(a, "--loss") == 0) {
      if (parse_loss(v, 0, &loss) != 0) usage("bad --loss (a fraction 0..1, or a percentage with %)");
    } else if (strcmp(a, "--link") == 0) {
      /* N:RATE:RTT:LOSS[:QUEUE], an empty field keeps the default */
      if (nover == NLINKS) usage("too many --link");
      char tmp[128];
      snprintf(tmp, sizeof tmp, "%s", v);
      char *fields[5] = {0};
      int nf = 0;
      for (char *p = tmp, *tok; nf < 5 && (tok = strsep(&p, ":"));) fields[nf++] = tok;
      if (nf < 2) usage("bad --link");
      over[nover].idx = atoi(fields[0]);
      if (over[nover].idx < 0 || over[nover].idx >= NLINKS) usage("bad --link index");
      over[nover].rate = nf > 1 && *fields[1] ? strtod(fields[1], NULL) : -1;
      over[nover].rtt = nf > 2 && *fields[2] ? strtod(fields[2], NULL) : -1;
      over[nover].loss = -1;
      if (nf > 3 && *fields[3] && parse_loss(fields[3], 0, &over[nover].loss) != 0)
        usage("bad --link loss");
      over[nover].queue = nf > 4 && *fields[4] ? strtod(fields[4], NULL) : -1;
      nover++;
    } else usage("unknown option");
  }
  if (!*tun_client || !*tun_server) usage("--tun-client and --tun-server are required");
  if (rate_mbit < 0 || rtt_ms < 0) usage("negative rate or RTT");

  for (int d = 0; d < 2; d++) {
    for (int i = 0; i < NLINKS; i++) {
      Link *l = &links[d][i];
      double rate = rate_mbit, rtt = rtt_ms, lo = loss, q = queue_bytes;
      for (int k = 0; k < nover; k++) {
        if (over[k].idx != i) continue;
        if (over[k].rate >= 0) rate = over[k].rate;
        if (over[k].rtt >= 0) rtt = over[k].rtt;
        if (over[k].loss >= 0) lo = over[k].loss;
        if (over[k].queue >= 0) q = over[k].queue;
      }
      l->rate_bps = rate * 1e6;
      l->delay_ns = (uint64_t)(rtt * 1e6 / 2);
      l->loss = lo;
      /* default queue: one bandwidth-delay product, at least a few full-size packets */
      if (q < 0) q = rate * 1e6 / 8 * rtt / 1000;
      if (q < 3 * 1500) q = 3 * 1500;
      l->queue_bytes = (uint64_t)q;
      /* per link and direction, so one link's traffic does not shift another's losses */
      l->rng = seed * 1000003ull + (uint64_t)(d * NLINKS + i);
    }
  }

  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Releases may come up to 100 us late, never early: letting the kernel coalesce our wakeups
   * cuts the emulator's CPU per packet from ~22 to ~14 us at 100 Mbit/s (a packet every 120 us),
   * measured. The link rate is kept by the free_at clock, not by the release timer, and 100 us is
   * small beside any RTT we emulate. */
  prctl(PR_SET_TIMERSLACK, 100000UL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* signals are delivered only inside ppoll, so a flag check after it never misses one */
  sigset_t block, orig;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &orig);

  fds[UP] = open_tun(tun_client);
  fds[DOWN] = open_tun(tun_server);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  printf("ready %s %s\n", tun_client, tun_server);

  static unsigned char buf[65536];
  struct pollfd pfd[3] = {
      {.fd = fds[UP], .events = POLLIN},
      {.fd = fds[DOWN], .events = POLLIN},
      {.fd = 0, .events = POLLIN},
  };
  for (;;) {
    uint64_t now = now_ns();
    uint64_t next = release_due(now);
    if (blackhole_until && now >= blackhole_until) {
      blackhole_until = 0;
      printf("event blackhole off\n");
    }
    if (blackhole_until && blackhole_until < next) next = blackhole_until;
    struct timespec ts, *tsp = NULL;
    if (next != UINT64_MAX) {
      uint64_t wait = next > now ? next - now : 0;
      ts.tv_sec = (time_t)(wait / 1000000000ull);
      ts.tv_nsec = (long)(wait % 1000000000ull);
      tsp = &ts;
    }
    int r = ppoll(pfd, 3, tsp, &orig);
    if (stop_signal) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      die("ppoll");
    }
    if (r == 0) continue;
    for (int d = 0; d < 2; d++) {
      if (!(pfd[d].revents & POLLIN)) continue;
      for (int k = 0; k < READ_BATCH; k++) {
        ssize_t n = read(fds[d], buf, sizeof buf);
        if (n <= 0) break; /* EAGAIN: drained */
        enqueue(d, buf, (size_t)n, now_ns());
      }
    }
    if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (read_stdin(now_ns())) break;
    }
  }
  print_stats();
  return 0;
}
