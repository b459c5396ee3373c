/* The demo company's raw inputs (demo.h): a consultancy's contacts (CSV),
 * three months of mail (mbox), Stripe events (JSON, one file each) and a
 * calendar (ICS), made from fixed lists with a seeded generator, so every
 * demo is the same. They go through the real importers and connectors. */
#include "cli/demo.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/buf.h"
#include "core/clock.h"

typedef struct Rng {
    uint64_t s;
} Rng;

static uint64_t rnd(Rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static int pick(Rng *r, int n)
{
    return (int)(rnd(r) % (uint64_t)n);
}

#define N(a) ((int)(sizeof(a) / sizeof *(a)))

/* ---- the people ---- */

static const char *const FIRST[] = {
    "Dana", "Priya", "Raj", "Grace", "Tomasz", "Sasha", "Ruth", "Chidi", "Mei", "Lars",
    "Amara", "Jonas", "Elena", "Kofi", "Ines", "Mateo", "Hana", "Oskar", "Leila", "Sam",
    "Nora", "Felix", "Yuki", "Omar", "Clara", "Ivan", "Zoe", "Ben", "Aisha", "Pablo",
    "Greta", "Theo", "Maya", "Arjun", "Lucia", "Finn", "Sofia", "Emil", "Rosa", "Hugo",
};
static const char *const LAST[] = {
    "Reyes", "Raman", "Patel", "Okafor", "Kowalczyk", "Bell", "Green", "Nwosu", "Lin", "Berg",
    "Diallo", "Weber", "Costa", "Mensah", "Silva", "Ruiz", "Sato", "Lund", "Haddad", "Quinn",
    "Fischer", "Meyer", "Tanaka", "Farah", "Rossi", "Petrov", "Clarke", "Adams", "Khan", "Vega",
    "Nilsen", "Moreau", "Cohen", "Iyer", "Marino", "Walsh", "Novak", "Kraus", "Santos", "Blanc",
};
/* company, domain, what they do; "" domain: a free-mail person */
static const char *const ORG[][3] = {
    { "Harbor Finch Coffee", "harborfinch.example", "a coffee roaster" },
    { "Lumen Dental", "lumendental.example", "a dental practice" },
    { "Nimbus Analytics", "nimbus.example", "a data start-up" },
    { "Okafor Logistics", "okaforlogistics.example", "a delivery firm" },
    { "Kowalczyk Architects", "kowalczyk.example", "an architecture studio" },
    { "Bellweather Yoga", "bellweather.example", "a yoga studio" },
    { "Greenfield Garden", "greenfield.example", "a community garden" },
    { "Pixel & Pine", "pixelpine.example", "a design agency" },
    { "Northwind Bikes", "northwind.example", "a bike shop" },
    { "Atlas Legal", "atlaslegal.example", "a law firm" },
    { "Bloom Bakery", "bloombakery.example", "a bakery" },
    { "Quarry Fitness", "quarryfit.example", "a gym" },
    { "Tidewater Travel", "tidewater.example", "a travel agency" },
    { "Copperleaf Tea", "copperleaf.example", "a tea shop" },
    { "Meridian Clinic", "meridianclinic.example", "a physiotherapy clinic" },
    { "Saltmarsh Books", "saltmarsh.example", "a bookshop" },
    { "Vela Robotics", "velarobotics.example", "a robotics start-up" },
    { "Juniper Events", "juniperevents.example", "an events company" },
    { "Orbit Labs", "orbitlabs.example", "a software studio" },
    { "Cedar & Stone", "cedarstone.example", "a furniture maker" },
};
static const char *const FREEMAIL[] = { "gmail.com", "outlook.com", "yahoo.com", "proton.me" };
static const char *const ROLES[] = { "Founder", "Operations Manager", "Head of Marketing",
                                     "Owner", "Office Manager", "CTO" };

#define DEMO_PEOPLE 40
#define DEMO_CUSTOMERS 15 /* people 0..14 pay */
#define DEMO_LEADS 10     /* people 15..24 write in as leads */

typedef struct Person {
    char first[16], last[16], email[96], company[48], what[48], role[32];
    bool freemail;
} Person;

static void people_make(Rng *r, Person *p)
{
    for (int i = 0; i < DEMO_PEOPLE; i++) {
        Person *x = &p[i];
        snprintf(x->first, sizeof x->first, "%s", FIRST[i]);
        snprintf(x->last, sizeof x->last, "%s", LAST[i]);
        x->freemail = i >= 30; /* the last ten write from free mail */
        const char *const *o = ORG[i % N(ORG)];
        if (x->freemail) {
            snprintf(x->email, sizeof x->email, "%s.%s@%s", x->first, x->last,
                     FREEMAIL[pick(r, N(FREEMAIL))]);
            snprintf(x->what, sizeof x->what, "%s", "a freelance project");
        } else {
            snprintf(x->email, sizeof x->email, "%s@%s", x->first, o[1]);
            snprintf(x->company, sizeof x->company, "%s", o[0]);
            snprintf(x->what, sizeof x->what, "%s", o[2]);
        }
        for (char *c = x->email; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        snprintf(x->role, sizeof x->role, "%s", ROLES[i % N(ROLES)]);
    }
}

/* ---- mail ---- */

typedef struct Mbox {
    FILE *f;
    int n;
    const char *me; /* the operator's address */
} Mbox;

static void rfc2822(int64_t ms, char out[64])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 64, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static void mbox_from_line(int64_t ms, char out[64])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 64, "%a %b %e %H:%M:%S %Y", &tm);
}

/* One message; id gets its Message-ID (without brackets). */
static void mail(Mbox *m, const Person *from, const char *to, int64_t ms, const char *subject,
                 const char *body, const char *in_reply_to, char id[96])
{
    char date[64], line[64];
    rfc2822(ms, date);
    mbox_from_line(ms, line);
    snprintf(id, 96, "demo-%04d.%lld@%s", ++m->n, (long long)(ms / 1000),
             strchr(from->email, '@') + 1);
    fprintf(m->f, "From %s %s\n", from->email, line);
    fprintf(m->f, "From: %s %s <%s>\n", from->first, from->last, from->email);
    fprintf(m->f, "To: %s\n", to);
    fprintf(m->f, "Subject: %s\n", subject);
    fprintf(m->f, "Date: %s\n", date);
    fprintf(m->f, "Message-ID: <%s>\n", id);
    if (in_reply_to)
        fprintf(m->f, "In-Reply-To: <%s>\nReferences: <%s>\n", in_reply_to, in_reply_to);
    fprintf(m->f, "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                  "Content-Transfer-Encoding: 8bit\n\n");
    /* mboxrd: a body line starting "From " is quoted */
    for (const char *p = body; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= 5 && !strncmp(p, "From ", 5))
            fputc('>', m->f);
        fwrite(p, 1, n, m->f);
        fputc('\n', m->f);
        p += n + (e ? 1 : 0);
    }
    fputc('\n', m->f);
}

static void signature(Buf *b, const Person *p)
{
    buf_printf(b, "\n\nBest,\n%s %s\n%s%s%s\n", p->first, p->last, p->role,
               p->company[0] ? ", " : "", p->company);
}

static const char *const LEAD_ASK[] = {
    "we are looking for someone to rebuild our website; could you send a quote?",
    "we need an online booking system and wondered what a project like that would cost.",
    "could you put together a proposal for a customer portal? Our budget is around 8k.",
    "we want to move our shop to Shopify before the spring season: what would you estimate?",
    "a friend recommended you for a data dashboard project; what is your pricing?",
};
static const char *const SUPPORT_ASK[][2] = {
    { "Checkout error", "The checkout page shows an error since this morning and customers cannot pay. Can you fix it?" },
    { "Booking page broken", "The booking page is broken on mobile: the calendar does not load. Please have a look." },
    { "Login not working", "Staff cannot log in to the admin since the update; it says 'invalid session'." },
    { "Report numbers wrong", "The monthly report shows the wrong totals for October, there seems to be a bug in the export." },
    { "Site is slow", "The site has become very slow this week, pages take ten seconds to load. Anything we can do?" },
    { "Emails not arriving", "Order confirmation emails are not arriving for some customers, they end up nowhere." },
};
static const char *const FEEDBACK[][2] = {
    { "export", "The CSV export drops the last column when I export the invoices." },
    { "export", "Exporting to CSV is slow and the export file has broken columns." },
    { "export", "Could the export include a CSV with all columns, not just the visible ones?" },
    { "export", "CSV export: columns come out in the wrong order in the exported file." },
    { "mobile", "The mobile app crashes when I open it on my Android phone." },
    { "mobile", "Mobile app keeps crashing on login, Android 14." },
    { "mobile", "On my phone the mobile app crashes right after the login screen." },
    { "invoice", "The pricing page does not say whether the invoice includes VAT." },
    { "invoice", "Invoice totals and the pricing page disagree on VAT." },
    { "invoice", "Please show VAT on the pricing page; my invoice surprised me." },
    { "docs", "Love the new dashboard, but the onboarding guide is confusing for new staff." },
    { "docs", "Feedback on the guide: the onboarding docs skip the part about user roles." },
};
static const char *const NEWS[][2] = {
    { "Your receipt from Hostly", "Thanks for your payment. Your receipt is attached. Unsubscribe from receipts any time." },
    { "This week in web design", "Our newsletter: five trends for the season. Unsubscribe at the bottom." },
    { "Domain renewal notice", "Your domain renews next month. Your receipt will follow. Newsletter settings: unsubscribe." },
};

int demo_data_write(const char *dir, int64_t now_ms, uint64_t seed, const char *me,
                    DemoCounts *counts, Err *err)
{
    Rng r = { seed };
    Person p[DEMO_PEOPLE];
    people_make(&r, p);
    memset(counts, 0, sizeof *counts);
    char path[4096];
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_set(err, ERR_IO, "%s: %s", dir, strerror(errno));
    /* contacts.csv: everyone but the leads, who arrive by mail */
    snprintf(path, sizeof path, "%s/contacts.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(f, "email,first name,last name,company,phone,tags\n");
    for (int i = 0; i < DEMO_PEOPLE; i++) {
        if (i >= DEMO_CUSTOMERS && i < DEMO_CUSTOMERS + DEMO_LEADS)
            continue;
        fprintf(f, "%s,%s,%s,\"%s\",+44 20 7946 %04d,%s\n", p[i].email, p[i].first, p[i].last,
                p[i].company, 100 + i, i < DEMO_CUSTOMERS ? "client" : "network");
        counts->contacts++;
    }
    fclose(f);

    /* mail.mbox: three months */
    snprintf(path, sizeof path, "%s/mail.mbox", dir);
    Mbox m = { .f = fopen(path, "w"), .me = me };
    if (!m.f)
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    const int64_t DAY = 86400000;
    int64_t start = now_ms - 90 * DAY;
    char id[96], id2[96];
    Buf b;
    buf_init(&b, 0);
    /* customers: project updates, support, threads */
    for (int i = 0; i < DEMO_CUSTOMERS; i++) {
        int64_t t = start + (int64_t)pick(&r, 10) * DAY + 9 * 3600000;
        for (int k = 0; t < now_ms - DAY; k++) {
            buf_clear(&b);
            if (k % 3 == 1) {
                const char *const *s = SUPPORT_ASK[pick(&r, N(SUPPORT_ASK))];
                buf_printf(&b, "Hi,\n\n%s", s[1]);
                signature(&b, &p[i]);
                mail(&m, &p[i], me, t, s[0], b.ptr, NULL, id);
                buf_clear(&b);
                buf_printf(&b, "Thanks, that works again now.");
                signature(&b, &p[i]);
                char re[128];
                snprintf(re, sizeof re, "Re: %s", s[0]);
                mail(&m, &p[i], me, t + 3 * 3600000, re, b.ptr, id, id2);
            } else {
                buf_printf(&b, "Hi,\n\nQuick update from %s: we reviewed the last milestone for "
                               "the project and are happy with it. Next week we would like to "
                               "go through the open points in a short call.",
                           p[i].company[0] ? p[i].company : "our side");
                signature(&b, &p[i]);
                mail(&m, &p[i], me, t, "Project update", b.ptr, NULL, id);
            }
            t += (int64_t)(5 + pick(&r, 9)) * DAY + (int64_t)pick(&r, 8) * 3600000;
        }
    }
    /* leads, spread over the three months, the last few recent */
    for (int j = 0; j < DEMO_LEADS; j++) {
        const Person *x = &p[DEMO_CUSTOMERS + j];
        int64_t t = j < 7 ? start + (int64_t)(j * 11 + pick(&r, 5)) * DAY
                          : now_ms - (int64_t)(1 + j - 7) * DAY;
        buf_clear(&b);
        buf_printf(&b, "Hello,\n\nI run %s and %s", x->what, LEAD_ASK[j % N(LEAD_ASK)]);
        signature(&b, x);
        mail(&m, x, me, t + 10 * 3600000, "Project inquiry", b.ptr, NULL, id);
    }
    /* feedback in the last week (and some earlier) */
    for (int j = 0; j < N(FEEDBACK) * 2; j++) {
        const Person *x = &p[(j * 7) % DEMO_CUSTOMERS];
        int64_t t = j < N(FEEDBACK) ? now_ms - (int64_t)(1 + j % 6) * DAY
                                    : start + (int64_t)(j * 3) * DAY;
        buf_clear(&b);
        buf_printf(&b, "Some feedback: %s", FEEDBACK[j % N(FEEDBACK)][1]);
        signature(&b, x);
        mail(&m, x, me, t + 15 * 3600000, "Feedback", b.ptr, NULL, id);
    }
    /* the network and the vendors */
    for (int j = 0; j < 60; j++) {
        int64_t t = start + (int64_t)pick(&r, 88) * DAY + (int64_t)pick(&r, 10) * 3600000;
        if (j % 2) {
            Person v = { 0 };
            snprintf(v.first, sizeof v.first, "Notifications");
            snprintf(v.last, sizeof v.last, "Team");
            snprintf(v.email, sizeof v.email, "news@vendor%d.example", j % 4);
            const char *const *s = NEWS[j % N(NEWS)];
            mail(&m, &v, me, t, s[0], s[1], NULL, id);
        } else {
            const Person *x = &p[DEMO_CUSTOMERS + DEMO_LEADS + (j / 2) % (DEMO_PEOPLE - DEMO_CUSTOMERS - DEMO_LEADS)];
            buf_clear(&b);
            buf_printf(&b, "Hi,\n\nGreat to catch up at the meetup. Let's have coffee next month "
                           "and compare notes on clients.");
            signature(&b, x);
            mail(&m, x, me, t, "Coffee next month?", b.ptr, NULL, id);
        }
    }
    counts->emails = m.n;
    fclose(m.f);

    /* stripe/NNN.json: payments, subscriptions, one refund */
    snprintf(path, sizeof path, "%s/stripe", dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        buf_done(&b);
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    }
    int n_ev = 0;
    for (int i = 0; i < DEMO_CUSTOMERS; i++) {
        int pays = 1 + pick(&r, 3);
        for (int k = 0; k < pays; k++) {
            int64_t t = start + (int64_t)(10 + k * 25 + pick(&r, 10)) * DAY;
            if (t > now_ms - DAY)
                t = now_ms - DAY - (int64_t)i * 3600000;
            int amount = (12 + pick(&r, 60)) * 10000;
            snprintf(path, sizeof path, "%s/stripe/%03d.json", dir, ++n_ev);
            FILE *s = fopen(path, "w");
            if (!s) {
                buf_done(&b);
                return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
            }
            fprintf(s, "{\"id\":\"evt_demo_%d\",\"object\":\"event\",\"created\":%lld,"
                       "\"type\":\"payment_intent.succeeded\",\"data\":{\"object\":{\"id\":"
                       "\"pi_demo_%d\",\"object\":\"payment_intent\",\"amount\":%d,"
                       "\"amount_received\":%d,\"currency\":\"gbp\",\"customer\":\"cus_demo_%d\","
                       "\"receipt_email\":\"%s\",\"shipping\":{\"name\":\"%s %s\"},\"description\":"
                       "\"Project milestone %d\",\"status\":\"succeeded\"}}}",
                    n_ev, (long long)(t / 1000), n_ev, amount, amount, i, p[i].email, p[i].first,
                    p[i].last, k + 1);
            fclose(s);
            counts->payments++;
        }
    }
    /* subscriptions: three monthly care plans, two yearly (one renewing soon),
     * one set to cancel */
    for (int i = 0; i < 6; i++) {
        bool yearly = i == 3 || i == 4;
        int64_t end = yearly ? (i == 3 ? now_ms + 18 * DAY : now_ms + 200 * DAY)
                             : now_ms + (int64_t)(5 + i * 4) * DAY;
        char cancel[48] = "";
        if (i == 5) /* set to end in two weeks */
            snprintf(cancel, sizeof cancel, ",\"cancel_at\":%lld",
                     (long long)((now_ms + 14 * DAY) / 1000));
        snprintf(path, sizeof path, "%s/stripe/%03d.json", dir, ++n_ev);
        FILE *s = fopen(path, "w");
        if (!s) {
            buf_done(&b);
            return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
        }
        fprintf(s, "{\"id\":\"evt_demo_%d\",\"object\":\"event\",\"created\":%lld,"
                   "\"type\":\"customer.subscription.%s\",\"data\":{\"object\":{\"id\":"
                   "\"sub_demo_%d\",\"object\":\"subscription\",\"customer\":\"cus_demo_%d\","
                   "\"status\":\"active\",\"current_period_end\":%lld%s,\"items\":{\"data\":[{"
                   "\"price\":{\"id\":\"%s\",\"unit_amount\":%d,\"currency\":\"gbp\",\"recurring\":{"
                   "\"interval\":\"%s\"},\"nickname\":\"%s\"}}]},\"plan\":{\"amount\":%d,"
                   "\"interval\":\"%s\",\"nickname\":\"%s\"}}}}",
                n_ev, (long long)((start + (int64_t)(20 + i) * DAY) / 1000),
                i == 5 ? "updated" : "created", i, i, (long long)(end / 1000), cancel,
                yearly ? "price_care_yearly" : "price_care_monthly", yearly ? 120000 : 15000,
                yearly ? "year" : "month", yearly ? "Care plan (yearly)" : "Care plan",
                yearly ? 120000 : 15000, yearly ? "year" : "month",
                yearly ? "Care plan (yearly)" : "Care plan");
        fclose(s);
        counts->subscriptions++;
    }
    snprintf(path, sizeof path, "%s/stripe/%03d.json", dir, ++n_ev);
    f = fopen(path, "w");
    if (!f) {
        buf_done(&b);
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    }
    {
        fprintf(f, "{\"id\":\"evt_demo_%d\",\"object\":\"event\",\"created\":%lld,"
                   "\"type\":\"charge.refunded\",\"data\":{\"object\":{\"id\":\"ch_demo_1\","
                   "\"object\":\"charge\",\"amount\":120000,\"amount_refunded\":20000,"
                   "\"currency\":\"gbp\",\"customer\":\"cus_demo_2\",\"payment_intent\":"
                   "\"pi_demo_1\",\"billing_details\":{\"email\":\"%s\"}}}}",
                n_ev, (long long)((now_ms - 20 * DAY) / 1000), p[2].email);
        fclose(f);
    }
    counts->stripe_events = n_ev;

    /* calendar.ics: calls with clients, and weekly office hours */
    snprintf(path, sizeof path, "%s/calendar.ics", dir);
    f = fopen(path, "w");
    if (!f) {
        buf_done(&b);
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    }
    fprintf(f, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bureau//demo//EN\r\n");
    for (int j = 0; j < 24; j++) {
        const Person *x = &p[j % DEMO_CUSTOMERS];
        int64_t t = now_ms - 60 * DAY + (int64_t)j * 3 * DAY;
        t -= t % 3600000;
        time_t ts = (time_t)(t / 1000), te = ts + 1800;
        struct tm a, z;
        gmtime_r(&ts, &a);
        gmtime_r(&te, &z);
        char s1[32], s2[32];
        strftime(s1, sizeof s1, "%Y%m%dT%H%M%SZ", &a);
        strftime(s2, sizeof s2, "%Y%m%dT%H%M%SZ", &z);
        fprintf(f, "BEGIN:VEVENT\r\nUID:demo-call-%d@bureau.example\r\nDTSTAMP:%s\r\n"
                   "DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Call with %s %s\r\n"
                   "ORGANIZER:mailto:%s\r\nATTENDEE;ROLE=REQ-PARTICIPANT:mailto:%s\r\n"
                   "END:VEVENT\r\n",
                j, s1, s1, s2, x->first, x->last, me, x->email);
        counts->meetings++;
    }
    fprintf(f, "BEGIN:VEVENT\r\nUID:demo-office-hours@bureau.example\r\nDTSTAMP:20260101T090000Z\r\n"
               "DTSTART:20260105T150000Z\r\nDTEND:20260105T160000Z\r\n"
               "RRULE:FREQ=WEEKLY;BYDAY=MO\r\nSUMMARY:Office hours\r\n"
               "ORGANIZER:mailto:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            me);
    fclose(f);
    counts->meetings++;
    buf_done(&b);
    return 0;
}
