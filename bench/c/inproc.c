/*
 * inproc.c - the C anchor for bench/inproc.py
 *
 * Measures libwebsockets' own lws_smd (Debian libwebsockets-dev 4.1.6) on the
 * workload the Python bus is held against: N participants registered for
 * LWSSMDCL_INTERACTION count their deliveries; a sender runs once per event
 * loop turn (a lws_sul timer rescheduled with zero delay) and formats ~100
 * bytes of JSON with lws_smd_msg_printf() 40 times per turn (the default
 * queue depth), until the requested number of messages has been accepted.
 * The loop then runs until every accepted message reached every peer.
 *
 * usage: inproc PEERS [MESSAGES [PER_TURN]]
 * prints one JSON object on stdout:
 *   {"impl":"c","peers":N,"msgs":M,"deliveries":D,"seconds":S,
 *    "queue_full":F,"turns":T,"depth":Q,"send_seconds":X}
 * where "queue_full" counts sends refused because the queue was full (the
 * sender then waits for the next turn) and "depth" is the most sends accepted
 * in one turn and "send_seconds" the time spent in the sender (formatting
 * and queueing; the rest is delivery and the loop): Debian's 4.1.6 has a fixed queue depth of 12, so the library,
 * not the sender, limits each turn to 12 there.
 *
 * The payload format must stay identical to BENCH_FORMAT in bench/inproc.py.
 */

#include <libwebsockets.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_PER_TURN 40
#define MAX_PEERS 64

#define BENCH_FORMAT \
	"{\"type\":\"bench\",\"src\":\"bench/inproc\",\"seq\":%" PRIu64 \
	",\"pad\":\"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ\"}"

struct peer {
	struct lws_smd_peer *handle;
	uint64_t count;
};

struct bench {
	struct lws_context *cx;
	lws_sorted_usec_list_t sul;
	struct peer peers[MAX_PEERS];
	int npeers;
	uint64_t target;     /* messages to send */
	uint64_t sent;       /* accepted by lws_smd_msg_printf */
	uint64_t queue_full; /* refused because the queue was full */
	uint64_t turns;      /* sender invocations */
	uint64_t depth;      /* most sends accepted in one turn */
	double send_s;       /* time spent inside the sender */
	int per_turn;
	int done;
};

static struct bench b;

static double now_s(void);

static int
peer_cb(void *opaque, lws_smd_class_t _class, lws_usec_t timestamp, void *buf,
	size_t len)
{
	struct peer *p = (struct peer *)opaque;

	(void)_class;
	(void)timestamp;
	(void)buf;
	(void)len;
	p->count++;

	return 0;
}

static uint64_t
total_deliveries(void)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < b.npeers; i++)
		n += b.peers[i].count;

	return n;
}

/* one loop turn of the sender: up to PER_TURN sends, then back to the loop */
static void
sender_cb(lws_sorted_usec_list_t *sul)
{
	double t0 = now_s();
	uint64_t i;

	(void)sul;
	b.turns++;

	for (i = 0; i < (uint64_t)b.per_turn && b.sent < b.target; i++) {
		if (lws_smd_msg_printf(b.cx, LWSSMDCL_INTERACTION, BENCH_FORMAT,
				       b.sent)) {
			b.queue_full++;
			break; /* try again next turn */
		}
		b.sent++;
	}
	if (i > b.depth)
		b.depth = i;
	b.send_s += now_s() - t0;

	if (b.sent == b.target &&
	    total_deliveries() == b.target * (uint64_t)b.npeers)
		b.done = 1;

	/*
	 * Keep a zero-delay timer pending, even when done, so the loop never
	 * blocks in poll() and main() sees b.done after this service call.
	 */
	lws_sul_schedule(b.cx, 0, &b.sul, sender_cb, 0);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);

	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	double t0, t1;
	int i;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s PEERS [MESSAGES [PER_TURN]]\n",
			argv[0]);
		return 2;
	}
	b.npeers = atoi(argv[1]);
	b.target = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000ull;
	b.per_turn = argc > 3 ? atoi(argv[3]) : DEFAULT_PER_TURN;
	if (b.npeers < 1 || b.npeers > MAX_PEERS || !b.target ||
	    b.per_turn < 1) {
		fprintf(stderr, "PEERS must be 1..%d, MESSAGES and PER_TURN "
			"above 0\n", MAX_PEERS);
		return 2;
	}

	lws_set_log_level(LLL_ERR, NULL);

	memset(&info, 0, sizeof(info));
	/* no vhost, no listener: only the event loop, timers and smd */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;

	b.cx = lws_create_context(&info);
	if (!b.cx) {
		fprintf(stderr, "lws_create_context failed\n");
		return 1;
	}

	for (i = 0; i < b.npeers; i++) {
		b.peers[i].handle = lws_smd_register(b.cx, &b.peers[i], 0,
						     LWSSMDCL_INTERACTION,
						     peer_cb);
		if (!b.peers[i].handle) {
			fprintf(stderr, "lws_smd_register failed\n");
			lws_context_destroy(b.cx);
			return 1;
		}
	}

	lws_sul_schedule(b.cx, 0, &b.sul, sender_cb, 0);

	t0 = now_s();
	while (!b.done)
		if (lws_service(b.cx, 0) < 0)
			break;
	t1 = now_s();

	printf("{\"impl\":\"c\",\"peers\":%d,\"msgs\":%" PRIu64
	       ",\"deliveries\":%" PRIu64 ",\"seconds\":%.6f"
	       ",\"queue_full\":%" PRIu64 ",\"turns\":%" PRIu64
	       ",\"depth\":%" PRIu64 ",\"send_seconds\":%.6f}\n",
	       b.npeers, b.sent, total_deliveries(), t1 - t0, b.queue_full,
	       b.turns, b.depth, b.send_s);

	lws_context_destroy(b.cx);

	return b.done ? 0 : 1;
}
