#include <cblas.h>
// Declared here too because not every cblas.h exports OpenBLAS's own threading controls.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// Which CPU kernels a DYNAMIC_ARCH OpenBLAS picked ("Haswell", "Cooperlake", ...; OPENBLAS_CORETYPE overrides it).
char *openblas_get_corename(void);
