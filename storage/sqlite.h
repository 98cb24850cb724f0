// SPDX-License-Identifier: Apache-2.0
// Thin RAII over the SQLite C API: owned connections and statements, and a transaction that
// rolls back unless committed. Errors become sqlite_error carrying the SQLite result code, so
// callers can tell SQLITE_FULL and SQLITE_CORRUPT apart from the rest.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace egw::storage {

class sqlite_error : public std::runtime_error {
public:
    sqlite_error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    // The primary result code (SQLITE_FULL, SQLITE_CORRUPT, ...), extended bits stripped.
    int code() const noexcept { return code_ & 0xff; }

private:
    int code_;
};

struct db_closer {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;

// Throws sqlite_error with the connection's message if rc is not one of the ok codes.
void check(sqlite3* db, int rc, std::string_view context);

db_ptr open_db(const std::string& path, int flags);
void exec(sqlite3* db, const char* sql);

// A prepared statement, prepared once and reset after each use.
class statement {
public:
    statement() = default;
    statement(sqlite3* db, const char* sql);

    statement& bind(int i, int64_t v);
    statement& bind(int i, std::string_view text);
    statement& bind_blob(int i, std::string_view bytes);
    statement& bind_null(int i);
    // Steps once: true if a row is available, false when done. Throws on error.
    bool step();
    void reset() noexcept;
    int64_t int64(int col) const { return sqlite3_column_int64(s_.get(), col); }
    std::string_view text(int col) const;
    std::string_view blob(int col) const;
    sqlite3_stmt* raw() const { return s_.get(); }

private:
    sqlite3* db_ = nullptr;
    std::unique_ptr<sqlite3_stmt, stmt_finalizer> s_;
};

// One connection with its transaction statements prepared once: BEGIN/COMMIT run once per
// ingested message, so parsing them each time would show up in the profile.
struct connection {
    connection() = default;
    connection(const std::string& path, int flags);
    sqlite3* get() const { return db.get(); }

    db_ptr db;
    statement begin;
    statement commit;
    statement rollback;
};

// BEGIN IMMEDIATE on construction; ROLLBACK in the destructor unless commit() succeeded.
class transaction {
public:
    explicit transaction(connection& c);
    ~transaction();
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    void commit();

private:
    connection& c_;
    bool done_ = false;
};

}  // namespace egw::storage
