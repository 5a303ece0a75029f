/*
 * schema_sql.h - schema.sql as a C string, generated at build time by
 * harness/CMakeLists.txt (kh_schema library), so that the binary needs no
 * file at run time.  Read-only; any thread.
 */
#ifndef KH_SCHEMA_SQL_H
#define KH_SCHEMA_SQL_H

extern const char kh_schema_sql[];

#endif
