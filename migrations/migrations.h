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

#endif
