/* The nightly consolidation of memory (memory/consolidate.h), run by the
 * engine on its own thread: once at start when expired items wait (a night
 * missed while the server was down is made up), then at every firing of
 * memory.consolidate_schedule. memory_consolidate() holds the lease
 * "memory.consolidate", so one process at a time does it. */
#include "flow/consolidator.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "flow/flow_cron.h"
#include "memory/consolidate.h"


struct FlowConsolidator {
    Ledger *l;
    const Config *cfg;
    ModelRouter *router;
    FlowCron cron;
    Store *rd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
};

static void run_once(FlowConsolidator *c)
{
    Err err = { 0 };
    json_t *rep = NULL;
    int rc = memory_consolidate(c->l, c->rd, c->router, c->cfg, core_time_now_ms(), false, &rep,
                                &err);
    if (rc == ERR_BUSY)
        return; /* another process runs it */
    if (rc < 0) {
        log_error("memory consolidation failed", json_pack("{s:s}", "error", err.msg));
        return;
    }
    if (json_is_true(json_object_get(rep, "lease_lost")))
        log_warn("memory consolidation: the lease was lost, the run stopped", NULL);
    if (json_integer_value(json_object_get(rep, "items")))
        log_info("memory consolidation",
                 json_pack("{s:O, s:O, s:O}", "items", json_object_get(rep, "items"), "summaries",
                           json_object_get(rep, "summaries"), "failed",
                           json_object_get(rep, "failed")));
    json_decref(rep);
}

static bool expired_waiting(FlowConsolidator *c)
{
    json_t *rep = NULL;
    Err err = { 0 };
    if (memory_consolidate(c->l, c->rd, c->router, c->cfg, core_time_now_ms(), true, &rep, &err) < 0)
        return false;
    bool any = json_integer_value(json_object_get(rep, "items")) > 0;
    json_decref(rep);
    return any;
}

static void *consolidator_main(void *arg)
{
    FlowConsolidator *c = arg;
    bool first = true;
    for (;;) {
        int64_t now = core_time_now_ms(), next = 0;
        Err err = { 0 };
        if (!first && flow_cron_next(&c->cron, now, &next, &err) < 0) {
            log_error("memory.consolidate_schedule: consolidation stops",
                      json_pack("{s:s}", "error", err.msg));
            break;
        }
        pthread_mutex_lock(&c->mu);
        while (!c->stop && !first && core_time_now_ms() < next) {
            struct timespec ts = { .tv_sec = next / 1000, .tv_nsec = (long)(next % 1000) * 1000000 };
            pthread_cond_timedwait(&c->cond, &c->mu, &ts); /* CLOCK_REALTIME, as next */
        }
        bool stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        if (!first || expired_waiting(c))
            run_once(c);
        first = false;
    }
    return NULL;
}

int flow__consolidator_start(Ledger *l, const Config *cfg, ModelRouter *router,
                             FlowConsolidator **ret, Err *err)
{
    *ret = NULL;
    const char *sched = cfg->memory_consolidate_schedule;
    if (!*sched || !strcmp(sched, "off"))
        return 0;
    FlowConsolidator *c = xcalloc(1, sizeof *c);
    int col = 0;
    if (flow_cron_parse(sched, cfg->memory_consolidate_timezone, &c->cron, &col, err) < 0) {
        free(c);
        return err_set(err, ERR_CONFIG, "memory.consolidate_schedule '%s': %s", sched, err->msg);
    }
    c->l = l;
    c->cfg = cfg;
    c->router = router;
    int rc = ledger_reader_open(l, &c->rd, err);
    if (rc < 0) {
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, consolidator_main, c) != 0) {
        store_close(c->rd);
        free(c);
        return err_set(err, ERR_INTERNAL, "cannot start the memory consolidation");
    }
    *ret = c;
    return 0;
}

void flow__consolidator_stop(FlowConsolidator *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    store_close(c->rd);
    free(c);
}
