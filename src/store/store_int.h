/* Private to src/store: the backend operations behind store.h. A backend's
 * Store and StoreStmt structs begin with the ops pointer. */
#ifndef BUREAU_STORE_STORE_INT_H
#define BUREAU_STORE_STORE_INT_H

#include "store/store.h"

typedef struct StoreOps {
    const char *name;
    void (*close)(Store *s);
    int (*exec)(Store *s, const char *sql, Err *err);
    int (*begin)(Store *s, bool write, Err *err);
    int (*commit)(Store *s, Err *err);
    void (*rollback)(Store *s);
    bool (*in_tx)(const Store *s);
    int (*prepare)(Store *s, const char *sql, StoreStmt **ret, Err *err);
    void (*stmt_done)(StoreStmt *st);
    int (*bind_int)(StoreStmt *st, int idx, int64_t v);
    int (*bind_real)(StoreStmt *st, int idx, double v);
    int (*bind_text)(StoreStmt *st, int idx, const char *v, size_t len);
    int (*bind_blob)(StoreStmt *st, int idx, const void *v, size_t len);
    int (*bind_null)(StoreStmt *st, int idx);
    int (*step)(StoreStmt *st, Err *err);
    int (*col_count)(StoreStmt *st);
    const char *(*col_name)(StoreStmt *st, int idx);
    StoreType (*col_type)(StoreStmt *st, int idx);
    int64_t (*col_int)(StoreStmt *st, int idx);
    double (*col_real)(StoreStmt *st, int idx);
    const char *(*col_text)(StoreStmt *st, int idx, size_t *ret_len);
    const void *(*col_blob)(StoreStmt *st, int idx, size_t *ret_len);
    int64_t (*changes)(Store *s);
    int (*backup_to)(Store *s, const char *dest_path, Err *err);
    int (*restore_from)(Store *s, const Store *src, Err *err);
    const char *(*path)(const Store *s);
    int (*checkpoint)(Store *s, StoreWal *wal, Err *err);
} StoreOps;

struct Store {
    const StoreOps *ops;
};

struct StoreStmt {
    const StoreOps *ops;
};

int store__sqlite_open(const char *path, const StoreOptions *opts, Store **ret, Err *err);

#endif
