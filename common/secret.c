#include "secret.h"

#include <string.h>

int secret_eq(const char *given, const char *key)
{
	size_t n = strlen(key), m = strlen(given), i;
	unsigned char d = n != m;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		d |= (unsigned char)(key[i] ^ given[i < m ? i : 0]);
	return d == 0;
}
