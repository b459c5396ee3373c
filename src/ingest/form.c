/* The form connector and the content-addressed file store behind uploads.
 * A form post becomes one form.submitted keyed by the hash of its canonical
 * data, so a double submission is stored once. A stored file's name is the
 * SHA-256 of its content, and it appears under that name only complete and
 * synced (written to a temporary name, then renamed). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "ingest/ingest_int.h"

#define DEFAULT_MAX_DATA (1024 * 1024)
#define DEFAULT_MAX_FILE (10 * 1024 * 1024)
#define DEFAULT_FILE_TYPE "application/octet-stream"

/* ---- form.submitted --------------------------------------------------- */

static bool value_filled(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v) > 0;
    size_t i;
    const json_t *el;
    json_array_foreach(v, i, el) if (json_is_string(el) && json_string_length(el) > 0) return true;
    return false;
}

/* For a repeated field the last value counts, as in the common pattern of a
 * hidden "0" followed by a checkbox. */
static bool value_truthy(const json_t *v)
{
    if (json_is_array(v))
        v = json_array_size(v) ? json_array_get(v, json_array_size(v) - 1) : NULL;
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    static const char *const yes[] = { "on", "yes", "true", "1", NULL };
    for (int i = 0; yes[i]; i++)
        if (len == strlen(yes[i]) && !strncasecmp(s, yes[i], len))
            return true;
    return false;
}

static int check_fields(const json_t *fields, Err *err)
{
    if (!json_is_object(fields))
        return err_set(err, ERR_INVAL, "form fields must be an object, not %s",
                       core_json_type_name(fields));
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)fields, name, v) {
        if (json_is_string(v))
            continue;
        bool ok = json_is_array(v);
        size_t i;
        json_t *el;
        json_array_foreach(v, i, el) ok = ok && json_is_string(el);
        if (!ok)
            return err_set(err, ERR_INVAL,
                           "form field '%.64s' must be a string or a list of strings, not %s",
                           name, core_json_type_name(v));
    }
    return 0;
}

static bool sha256_hex_ok(const char *s)
{
    size_t n = strnlen(s, CORE_SHA256_HEX + 1);
    return n == CORE_SHA256_HEX && strspn(s, "0123456789abcdef") == n;
}

static int files_json(const IngestFormFile *files, size_t n_files, json_t **ret, Err *err)
{
    json_t *arr = json_array();
    int rc = 0;
    for (size_t i = 0; i < n_files; i++) {
        const IngestFormFile *f = &files[i];
        const char *field = f->field ? f->field : "";
        const char *type = f->type && f->type[0] ? f->type : DEFAULT_FILE_TYPE;
        if (!field[0]) {
            rc = err_set(err, ERR_INVAL, "file %zu: its form field has no name", i);
            goto out;
        }
        if (f->size < 0 || !sha256_hex_ok(f->sha256)) {
            rc = err_set(err, ERR_INVAL, "file in field '%.64s': bad size or sha256", field);
            goto out;
        }
        json_t *jfield = json_string(field), *jname = json_string(f->name ? f->name : ""),
               *jtype = json_string(type);
        if (!jfield || !jname || !jtype) {
            json_decref(jfield);
            json_decref(jname);
            json_decref(jtype);
            rc = err_set(err, ERR_INVAL,
                         "file in field '%.64s': field, file name or type is not UTF-8", field);
            goto out;
        }
        json_array_append_new(arr, json_pack("{s:o, s:o, s:o, s:I, s:s}", "field", jfield, "name",
                                             jname, "type", jtype, "size",
                                             (json_int_t)f->size, "sha256", f->sha256));
    }
out:
    if (rc < 0)
        json_decref(arr);
    else
        *ret = arr;
    return rc;
}

int ingest_form_event(const ConnectorConfig *conn, const json_t *fields,
                      const IngestFormFile *files, size_t n_files, const EventLimits *limits,
                      Event **ret, bool *ret_honeypot, Err *err)
{
    json_t *kept = NULL, *file_list = NULL, *data = NULL;
    char *key = NULL;
    Buf canon;
    size_t max = limits && limits->max_data_bytes ? limits->max_data_bytes : DEFAULT_MAX_DATA;
    buf_init(&canon, max);
    int rc;

    if ((rc = check_fields(fields, err)) < 0)
        goto out;
    if (conn->honeypot && conn->honeypot[0]) {
        const json_t *hp = json_object_get(fields, conn->honeypot);
        if (hp && value_filled(hp)) {
            *ret = NULL;
            *ret_honeypot = true;
            goto out;
        }
    }
    int consent = conn->consent;
    if (conn->consent_field && conn->consent_field[0] &&
        value_truthy(json_object_get(fields, conn->consent_field)))
        consent = 2;
    /* The (empty) honeypot is noise: it is not part of what was submitted. */
    kept = json_copy((json_t *)fields);
    if (conn->honeypot)
        json_object_del(kept, conn->honeypot);
    if ((rc = files_json(files, n_files, &file_list, err)) < 0)
        goto out;
    const char *form = conn->form && conn->form[0] ? conn->form : conn->name;
    data = json_pack("{s:s, s:O, s:O}", "form", form, "fields", kept, "files", file_list);
    if (!data) {
        rc = err_set(err, ERR_INVAL, "form name '%.64s' is not UTF-8", form);
        goto out;
    }
    if (core_json_canonical(data, &canon) < 0) {
        rc = err_set(err, ERR_TOOBIG, "form data larger than the limit of %zu bytes", max);
        goto out;
    }
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_hex(canon.ptr, canon.len, hex);
    size_t n = strlen("form:") + strlen(conn->name) + 1 + CORE_SHA256_HEX + 1;
    key = xmalloc(n);
    snprintf(key, n, "form:%s:%s", conn->name, hex);
    rc = ingest__event_build("form.submitted", conn->source ? conn->source : conn->name, consent,
                             key, NULL, data, limits, ret, err);
    if (rc == 0)
        *ret_honeypot = false;
out:
    json_decref(kept);
    json_decref(file_list);
    json_decref(data);
    free(key);
    buf_done(&canon);
    return rc;
}

/* ---- the file store --------------------------------------------------- */

struct IngestFile {
    char *dir;      /* DATA/files */
    char *tmp_path; /* DATA/files/.upload-XXXXXX */
    int fd;
    CoreSha256 *hash;
    size_t max;
    int64_t size;
    int failed;     /* ERR_TOOBIG or ERR_IO once a write failed: only _abort remains */
    bool nosync;    /* the caller syncs a whole batch with ingest_files_sync() */
};

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + 1 + strlen(b) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

int ingest_file_begin(const char *data_dir, size_t max_bytes, IngestFile **ret, Err *err)
{
    IngestFile *f = xcalloc(1, sizeof *f);
    f->fd = -1;
    f->max = max_bytes ? max_bytes : DEFAULT_MAX_FILE;
    f->dir = path_join(data_dir, "files");
    int rc = 0;
    if (mkdir(f->dir, 0700) < 0 && errno != EEXIST) {
        rc = err_set(err, ERR_IO, "create %s: %s", f->dir, strerror(errno));
        goto out;
    }
    f->tmp_path = path_join(f->dir, ".upload-XXXXXX");
    if ((f->fd = mkostemp(f->tmp_path, O_CLOEXEC)) < 0) {
        rc = err_set(err, ERR_IO, "create a temporary file in %s: %s", f->dir, strerror(errno));
        free(f->tmp_path);
        f->tmp_path = NULL;
        goto out;
    }
    f->hash = core_sha256_new();
out:
    if (rc < 0)
        ingest_file_abort(f);
    else
        *ret = f;
    return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ingest_file_write(IngestFile *f, const void *data, size_t len, Err *err)
{
    if (f->failed)
        return err_set(err, f->failed, "upload: an earlier write failed");
    if (len > f->max - (size_t)f->size) {
        f->failed = ERR_TOOBIG;
        return err_set(err, ERR_TOOBIG, "uploaded file larger than the limit of %zu bytes",
                       f->max);
    }
    if (write_all(f->fd, data, len) < 0) {
        f->failed = ERR_IO;
        return err_set(err, ERR_IO, "write %s: %s", f->tmp_path, strerror(errno));
    }
    core_sha256_update(f->hash, data, len);
    f->size += (int64_t)len;
    return 0;
}

int ingest_file_finish(IngestFile *f, char ret_sha256[CORE_SHA256_HEX + 1], int64_t *ret_size,
                       Err *err)
{
    char *target = NULL;
    int rc = 0, dfd = -1;
    if (f->failed) {
        rc = err_set(err, f->failed, "upload: an earlier write failed");
        goto out;
    }
    if (!f->nosync && fsync(f->fd) < 0) {
        rc = err_set(err, ERR_IO, "fsync %s: %s", f->tmp_path, strerror(errno));
        goto out;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) < 0) {
        rc = err_set(err, ERR_IO, "close %s: %s", f->tmp_path, strerror(errno));
        goto out;
    }
    uint8_t digest[CORE_SHA256_LEN];
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_final(f->hash, digest);
    core_hex_encode(digest, sizeof digest, hex);
    target = path_join(f->dir, hex);
    struct stat st;
    if (stat(target, &st) == 0) {
        /* The same content is already stored (the name is its hash); the
         * temporary file is dropped by ingest_file_abort() below. */
    } else if (rename(f->tmp_path, target) < 0) {
        rc = err_set(err, ERR_IO, "rename to %s: %s", target, strerror(errno));
        goto out;
    } else {
        free(f->tmp_path);
        f->tmp_path = NULL;
        /* Make the new name durable too. */
        if (!f->nosync &&
            ((dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(dfd) < 0)) {
            rc = err_set(err, ERR_IO, "fsync %s: %s", f->dir, strerror(errno));
            goto out;
        }
    }
    memcpy(ret_sha256, hex, sizeof hex);
    *ret_size = f->size;
out:
    if (dfd >= 0)
        close(dfd);
    free(target);
    ingest_file_abort(f);
    return rc;
}

void ingest_file_nosync(IngestFile *f)
{
    f->nosync = true;
}

int ingest_files_sync(const char *data_dir, Err *err)
{
    char *dir = path_join(data_dir, "files");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 && errno == ENOENT)
        goto out; /* nothing was stored */
    if (fd < 0 || syncfs(fd) < 0)
        rc = err_set(err, ERR_IO, "sync %s: %s", dir, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

void ingest_file_abort(IngestFile *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp_path)
        unlink(f->tmp_path);
    core_sha256_free(f->hash);
    free(f->tmp_path);
    free(f->dir);
    free(f);
}
