// SPDX-License-Identifier: Apache-2.0
// The buffer's schema and its migrations, keyed by PRAGMA user_version.
#pragma once

#include <sqlite3.h>

namespace egw::storage {

// The schema version this build writes. Older files are migrated forward in one transaction;
// a newer file (written by a later release) is refused rather than guessed at.
inline constexpr int schema_version = 6;

// Brings the database to schema_version. Throws sqlite_error or std::runtime_error.
void migrate(sqlite3* db);

}  // namespace egw::storage
