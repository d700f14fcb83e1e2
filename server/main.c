/* otfused: the fusion service. (Being built: see issue 6.) */
#include <stdio.h>

int main(void) {
  fprintf(stderr, "otfused: not built yet\n");
  return 1;
}
