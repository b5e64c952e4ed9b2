/*
 * smd_scenarios.c - scripted lws_smd scenarios against the real C library
 *
 * tests/test_c_parity.py compiles this against Debian's libwebsockets-dev
 * (4.1.6) and runs the same scripts on smdbus.Bus, then compares the logs.
 *
 * usage: smd_scenarios SCENARIO
 *
 * A scenario is a list of steps. main() runs each step outside the event
 * loop, then turns the loop a few times so lws_smd delivers everything
 * queued (it drains its queue completely in one turn). Every line of the log
 * is tab-separated:
 *
 *   step  N                         a step begins
 *   send  CLASS  PAYLOAD  RESULT    RESULT: ok | refused (nobody listens) |
 *                                   full (queue depth reached)
 *   deliver  NAME  CLASS  PAYLOAD   a participant's callback ran
 *   unregister  NAME / register  NAME  MASK
 *
 * CLASS and MASK are lower-case hex without 0x. Before the first step the
 * loop runs until lws_system reaches OPERATIONAL, so the context's own
 * SYSTEM_STATE messages (sent only while somebody listens) cannot appear.
 * The context registers a participant of its own for NETWORK at creation;
 * it logs nothing, and the Python side mirrors it with a silent participant.
 */

#include <libwebsockets.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER0 (1u << 24)
#define METRICS (1u << 3) /* LWSSMDCL_METRICS, not in 4.1.6's header */

enum action {
	ACT_NONE,
	ACT_ECHO,      /* send "echo-<payload>" of the same class, once each */
	ACT_UNREG,     /* on its first delivery, unregister participant .other */
	ACT_REG,       /* on its first delivery, register participant .other */
};

struct part {
	const char *name;
	lws_smd_class_t mask;
	enum action action;
	struct part *other;
	struct lws_smd_peer *handle;
	int seen;
};

static struct lws_context *cx;
static lws_sorted_usec_list_t keepalive;

static void
snd(lws_smd_class_t cls, const char *payload)
{
	size_t n = strlen(payload);
	const char *res = "ok";
	void *p;

	p = lws_smd_msg_alloc(cx, cls, n);
	if (!p)
		res = "refused";
	else {
		memcpy(p, payload, n);
		if (lws_smd_msg_send(cx, p)) {
			lws_smd_msg_free(&p);
			res = "full";
		}
	}
	printf("send\t%x\t%s\t%s\n", (unsigned int)cls, payload, res);
}

static int part_cb(void *opaque, lws_smd_class_t cls, lws_usec_t ts,
		   void *buf, size_t len);

static void
reg(struct part *p)
{
	p->handle = lws_smd_register(cx, p, 0, p->mask, part_cb);
	if (!p->handle) {
		fprintf(stderr, "lws_smd_register %s failed\n", p->name);
		exit(1);
	}
	printf("register\t%s\t%x\n", p->name, (unsigned int)p->mask);
}

static void
unreg(struct part *p)
{
	lws_smd_unregister(p->handle);
	p->handle = NULL;
	printf("unregister\t%s\n", p->name);
}

static int
part_cb(void *opaque, lws_smd_class_t cls, lws_usec_t ts, void *buf,
	size_t len)
{
	struct part *p = (struct part *)opaque;
	char echo[LWS_SMD_MAX_PAYLOAD + 1];

	(void)ts;
	printf("deliver\t%s\t%x\t%.*s\n", p->name, (unsigned int)cls, (int)len,
	       (const char *)buf);

	switch (p->action) {
	case ACT_ECHO:
		if (len < 5 || memcmp(buf, "echo-", 5)) {
			snprintf(echo, sizeof(echo), "echo-%.*s", (int)len,
				 (const char *)buf);
			snd(cls, echo);
		}
		break;
	case ACT_UNREG:
		if (!p->seen && p->other->handle)
			unreg(p->other);
		break;
	case ACT_REG:
		if (!p->seen)
			reg(p->other);
		break;
	default:
		break;
	}
	p->seen++;

	return 0;
}

static void
tick(lws_sorted_usec_list_t *sul)
{
	/* re-armed from inside the loop, so poll() never sleeps */
	lws_sul_schedule(cx, 0, sul, tick, 0);
}

static void
turn_loop(int turns)
{
	while (turns--)
		lws_service(cx, 0);
}

/* -- the scenarios ------------------------------------------------------- */

static struct part A = {"A", LWSSMDCL_INTERACTION, ACT_NONE, NULL, NULL, 0};
static struct part B = {"B", LWSSMDCL_SYSTEM_STATE, ACT_NONE, NULL, NULL, 0};
static struct part C = {"C", USER0, ACT_NONE, NULL, NULL, 0};
static struct part D = {"D", LWSSMDCL_INTERACTION, ACT_NONE, NULL, NULL, 0};

/* (a) the C peer test, steps 1-2 */
static void
peer_test_1(void)
{
	reg(&A);
	reg(&B);
	reg(&C);
	snd(LWSSMDCL_INTERACTION, "{\"i\":1}");
	snd(LWSSMDCL_SYSTEM_STATE, "{\"s\":1}");
	/* the context itself listens to NETWORK in 4.1.6: accepted */
	snd(LWSSMDCL_NETWORK, "{\"n\":1}");
	/* nobody listens to METRICS: refused without error */
	snd(METRICS, "{\"m\":1}");
	snd(USER0, "{\"u\":1}");
	unreg(&C);
}

static void
peer_test_2(void)
{
	snd(LWSSMDCL_INTERACTION, "{\"i\":2}");
	snd(LWSSMDCL_SYSTEM_STATE, "{\"s\":2}");
}

/* (b) round robin, identical masks */
static void
rr_same_1(void)
{
	B.mask = LWSSMDCL_INTERACTION;
	C.mask = LWSSMDCL_INTERACTION;
	reg(&A);
	reg(&B);
	reg(&C);
	snd(LWSSMDCL_INTERACTION, "m1");
	snd(LWSSMDCL_INTERACTION, "m2");
	snd(LWSSMDCL_INTERACTION, "m3");
	snd(LWSSMDCL_INTERACTION, "m4");
}

/* (c) round robin, different masks and mixed classes */
static void
rr_mixed_1(void)
{
	B.mask = LWSSMDCL_INTERACTION | LWSSMDCL_NETWORK;
	C.mask = LWSSMDCL_NETWORK;
	D.mask = USER0 | LWSSMDCL_SYSTEM_STATE;
	reg(&A);
	reg(&B);
	reg(&C);
	reg(&D);
	snd(LWSSMDCL_INTERACTION, "i1");
	snd(LWSSMDCL_NETWORK, "n1");
	snd(LWSSMDCL_INTERACTION, "i2");
	snd(USER0, "u1");
	snd(LWSSMDCL_INTERACTION | LWSSMDCL_NETWORK, "in1");
	snd(LWSSMDCL_NETWORK, "n2");
	snd(LWSSMDCL_SYSTEM_STATE | USER0, "su1");
	snd(LWSSMDCL_INTERACTION, "i3");
}

/* (d) a participant registering while messages it matches are queued */
static void
late_1(void)
{
	reg(&A);
	snd(LWSSMDCL_INTERACTION, "early1");
	snd(LWSSMDCL_INTERACTION, "early2");
	reg(&D);
}

static void
late_2(void)
{
	snd(LWSSMDCL_INTERACTION, "later");
}

/* (e) queue depth: send past it without returning to the loop, recover */
static void
depth_1(void)
{
	char buf[16];
	int i;

	reg(&A);
	for (i = 1; i <= 41; i++) {
		snprintf(buf, sizeof(buf), "q%d", i);
		snd(LWSSMDCL_INTERACTION, buf);
	}
}

static void
depth_2(void)
{
	snd(LWSSMDCL_INTERACTION, "after");
}

/* (f) a participant that sends from its callback: no recursion */
static void
echo_1(void)
{
	A.action = ACT_ECHO;
	reg(&A);
	reg(&D);
	snd(LWSSMDCL_INTERACTION, "x1");
	snd(LWSSMDCL_INTERACTION, "x2");
}

/* (g) send a class whose only participant has unregistered */
static void
gone_1(void)
{
	lws_usec_t left;

	reg(&A);
	reg(&C);
	unreg(&C);
	/*
	 * 4.1.6 tells "sent after the leave" from "in flight before it" by
	 * comparing microsecond timestamps (msg->timestamp > timestamp_left): a
	 * send in the same microsecond as the unregister counts as in flight, is
	 * handed to the zombie and freed. Let the clock tick first, so the send
	 * is after the leave on every run, as the scenario says.
	 */
	left = lws_now_usecs();
	while (lws_now_usecs() <= left)
		;
	snd(USER0, "u-after-unregister");
}

static void
gone_2(void)
{
	char buf[16];
	int i;

	for (i = 1; i <= 12; i++) {
		snprintf(buf, sizeof(buf), "g%d", i);
		snd(LWSSMDCL_INTERACTION, buf);
	}
}

/* (h) unregister another participant from inside a callback */
static void
unreg_cb_1(void)
{
	A.action = ACT_UNREG;
	A.other = &D;
	reg(&A);
	reg(&D);
	snd(LWSSMDCL_INTERACTION, "r1");
	snd(LWSSMDCL_INTERACTION, "r2");
}

/* (i) register another participant from inside a callback */
static void
reg_cb_1(void)
{
	A.action = ACT_REG;
	A.other = &D;
	reg(&A);
	snd(LWSSMDCL_INTERACTION, "r1");
	snd(LWSSMDCL_INTERACTION, "r2");
}

static void
reg_cb_2(void)
{
	snd(LWSSMDCL_INTERACTION, "r3");
}

typedef void (*step_t)(void);

static const struct scenario {
	const char *name;
	step_t steps[4];
} scenarios[] = {
	{"peer_test", {peer_test_1, peer_test_2}},
	{"rr_same", {rr_same_1}},
	{"rr_mixed", {rr_mixed_1}},
	{"late_registrant", {late_1, late_2}},
	{"queue_depth", {depth_1, depth_2}},
	{"send_from_callback", {echo_1}},
	{"send_after_unregister", {gone_1, gone_2}},
	{"unregister_in_callback", {unreg_cb_1}},
	{"register_in_callback", {reg_cb_1, reg_cb_2}},
};

int
main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	const struct scenario *sc = NULL;
	size_t i;
	int n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s SCENARIO\n", argv[0]);
		return 2;
	}
	for (i = 0; i < LWS_ARRAY_SIZE(scenarios); i++)
		if (!strcmp(argv[1], scenarios[i].name))
			sc = &scenarios[i];
	if (!sc) {
		fprintf(stderr, "unknown scenario %s; known:", argv[1]);
		for (i = 0; i < LWS_ARRAY_SIZE(scenarios); i++)
			fprintf(stderr, " %s", scenarios[i].name);
		fprintf(stderr, "\n");
		return 2;
	}

	/* line-buffered: a log cut short by a hang still reaches the test */
	setvbuf(stdout, NULL, _IOLBF, 0);
	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	cx = lws_create_context(&info);
	if (!cx) {
		fprintf(stderr, "lws_create_context failed\n");
		return 1;
	}
	lws_sul_schedule(cx, 0, &keepalive, tick, 0);

	for (n = 0; n < 100 && lws_system_get_state_manager(cx)->state !=
					LWS_SYSTATE_OPERATIONAL; n++)
		turn_loop(1);
	if (lws_system_get_state_manager(cx)->state != LWS_SYSTATE_OPERATIONAL) {
		fprintf(stderr, "lws_system never reached OPERATIONAL\n");
		return 1;
	}

	for (n = 0; n < 4 && sc->steps[n]; n++) {
		printf("step\t%d\n", n + 1);
		sc->steps[n]();
		turn_loop(4);
	}

	fflush(stdout);
	lws_context_destroy(cx);

	return 0;
}
