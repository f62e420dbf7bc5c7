#ifndef HOPXD_MIGRATIONS_H
#define HOPXD_MIGRATIONS_H

/* One embedded migrations/NNNN_name.sql file. */
struct migration {
	int version;
	const char *name;
	const char *sql;
};

/* All migrations, version 1..migrations_count in order (generated). */
extern const struct migration migrations[];
extern const int migrations_count;

/* The same for the fleet's registry on PostgreSQL (pg/, generated). */
extern const struct migration pg_migrations[];
extern const int pg_migrations_count;

#endif
