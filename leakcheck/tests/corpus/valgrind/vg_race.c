/* vg_race.c - a data race for helgrind and drd: two threads increment a
 * counter without a lock; a second counter is locked (no report). */
#include <pthread.h>
#include <stdio.h>

static int racy;
static int locked;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *bump(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++) {
		racy++;
		pthread_mutex_lock(&mu);
		locked++;
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

int main(void)
{
	pthread_t a, b;
	pthread_create(&a, NULL, bump, NULL);
	pthread_create(&b, NULL, bump, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	printf("%d\n", locked);
	return 0;
}
