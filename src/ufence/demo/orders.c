/*
 * ufence demo: a small order book with two classic heap bugs.
 *
 * 1. format_label() writes the terminating NUL one byte past a buffer sized
 *    with strlen() instead of strlen() + 1 (an off-by-one heap overflow).
 * 2. cancel_order() frees an order but the book keeps the pointer; the
 *    later audit reads the freed memory (use-after-free).
 *
 * Under plain malloc both usually "work": the damage lands in allocator
 * slack or in memory nobody has reused yet, and the crash, if any, comes
 * much later somewhere else. Under `ufence run --mode full` each is
 * reported at its first faulty access, with the allocation and free stacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct order {
	int id;
	int quantity;
	double price;
	char *label;
};

static struct order *book[8];

static char *format_label(const char *symbol, int id)
{
	char tmp[64];
	int n = snprintf(tmp, sizeof(tmp), "%s-%04d", symbol, id);
	char *label = malloc((size_t)n); /* BUG: no room for the NUL */
	memcpy(label, tmp, (size_t)n + 1);
	return label;
}

static struct order *new_order(int id, int quantity, double price)
{
	struct order *o = calloc(1, sizeof(*o));
	o->id = id;
	o->quantity = quantity;
	o->price = price;
	o->label = format_label("ACME", id);
	return o;
}

static void cancel_order(int slot)
{
	free(book[slot]->label);
	free(book[slot]); /* BUG: book[slot] still points here */
}

static double audit(void)
{
	double total = 0;
	for (int i = 0; i < 8; i++)
		if (book[i])
			total += book[i]->quantity * book[i]->price;
	return total;
}

int main(void)
{
	for (int i = 0; i < 8; i++)
		book[i] = new_order(i + 1, 10 * (i + 1), 9.5 + i);
	cancel_order(3);
	printf("book value: %.2f\n", audit());
	return 0;
}
