#ifndef HOPXD_SECRET_H
#define HOPXD_SECRET_H

/*
 * 1 when given equals key, compared in a time that does not tell how much
 * of it matched; 0 for an empty key (nothing is ever its match).
 */
int secret_eq(const char *given, const char *key);

#endif
