/* greet is a WasmWiz guest in C (wasi-libc): it greets its arguments and counts the lines,
 * words and bytes of its stdin. $GREETING replaces "hello".
 *
 *   clang --target=wasm32-wasi -O2 -s -o greet-c.wasm greet.c
 *   wasmwiz run --stdin 'one two' greet-c.wasm -- Ada Grace
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	const char *greeting = getenv("GREETING");
	if (greeting == NULL || *greeting == '\0')
		greeting = "hello";
	printf("%s, ", greeting);
	if (argc < 2)
		printf("world");
	for (int i = 1; i < argc; i++)
		printf("%s%s", i > 1 ? " and " : "", argv[i]);
	printf("!\n");

	long lines = 0, words = 0, bytes = 0;
	int c, in_word = 0;
	while ((c = getchar()) != EOF) {
		bytes++;
		if (c == '\n')
			lines++;
		int space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
		if (!space && !in_word)
			words++;
		in_word = !space;
	}
	printf("stdin: %ld lines, %ld words, %ld bytes\n", lines, words, bytes);
	return 0;
}
