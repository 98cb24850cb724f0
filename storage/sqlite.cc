// SPDX-License-Identifier: Apache-2.0
#include "storage/sqlite.h"

#include <time.h>

namespace egw::storage {

void check(sqlite3* db, int rc, std::string_view context) {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
    std::string msg(context);
    msg += ": ";
    msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw sqlite_error(rc, msg);
}

namespace {

// SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms between attempts: far longer than the
// transactions it waits for (the buffer's writers queue on its write lock instead, see
// buffer::lock_writer; what remains are other connections' short transactions, such as the
// devices store's). Poll every 100 us for the first 2 ms, then every millisecond, 5 s in all.
int busy_wait(void*, int attempts) noexcept {
    constexpr int fine = 20;  // 20 x 100 us
    constexpr int coarse = 5000;
    if (attempts >= fine + coarse) return 0;
    const timespec t{0, attempts < fine ? 100'000L : 1'000'000L};
    nanosleep(&t, nullptr);
    return 1;
}

}  // namespace

db_ptr open_db(const std::string& path, int flags) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    db_ptr db(raw);
    check(db.get(), rc, "open " + path);
    sqlite3_extended_result_codes(db.get(), 1);
    // Writers on other connections hold the lock for at most one short transaction.
    sqlite3_busy_handler(db.get(), busy_wait, nullptr);
    return db;
}

void exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = std::string(sql) + ": " + (err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        throw sqlite_error(rc, msg);
    }
}

statement::statement(sqlite3* db, const char* sql) : db_(db) {
    sqlite3_stmt* raw = nullptr;
    check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr), sql);
    s_.reset(raw);
}

statement& statement::bind(int i, int64_t v) {
    check(db_, sqlite3_bind_int64(s_.get(), i, v), "bind");
    return *this;
}

statement& statement::bind(int i, std::string_view text) {
    check(db_,
          sqlite3_bind_text(s_.get(), i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC),
          "bind");
    return *this;
}

statement& statement::bind_blob(int i, std::string_view bytes) {
    // A zero-length blob still binds as a blob (not NULL) thanks to the non-null pointer.
    static const char empty = 0;
    const char* p = bytes.empty() ? &empty : bytes.data();
    check(db_, sqlite3_bind_blob(s_.get(), i, p, static_cast<int>(bytes.size()), SQLITE_STATIC),
          "bind");
    return *this;
}

statement& statement::bind_null(int i) {
    check(db_, sqlite3_bind_null(s_.get(), i), "bind");
    return *this;
}

bool statement::step() {
    int rc = sqlite3_step(s_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    // Take the message before reset() so the error names what failed.
    std::string msg = std::string(sqlite3_sql(s_.get())) + ": " + sqlite3_errmsg(db_);
    sqlite3_reset(s_.get());
    throw sqlite_error(rc, msg);
}

void statement::reset() noexcept {
    sqlite3_reset(s_.get());
    sqlite3_clear_bindings(s_.get());
}

std::string_view statement::text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_.get(), col));
    return p ? std::string_view(p, sqlite3_column_bytes(s_.get(), col)) : std::string_view();
}

std::string_view statement::blob(int col) const {
    auto p = static_cast<const char*>(sqlite3_column_blob(s_.get(), col));
    return p ? std::string_view(p, sqlite3_column_bytes(s_.get(), col)) : std::string_view();
}

connection::connection(const std::string& path, int flags)
    : db(open_db(path, flags)),
      begin(db.get(), "BEGIN IMMEDIATE"),
      commit(db.get(), "COMMIT"),
      rollback(db.get(), "ROLLBACK") {}

transaction::transaction(connection& c) : c_(c) {
    c_.begin.step();
    c_.begin.reset();
}

transaction::~transaction() {
    if (done_) return;
    // ROLLBACK fails harmlessly when SQLite already rolled back (e.g. after SQLITE_FULL).
    sqlite3_step(c_.rollback.raw());
    c_.rollback.reset();
}

void transaction::commit() {
    c_.commit.step();
    c_.commit.reset();
    done_ = true;
}

}  // namespace egw::storage
