# embed.cmake - turns a file into a C array (api/openapi.yaml; the page uses embed_assets.cmake).
# cmake -DIN=file -DOUT=file.c -DSYM=name -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* generated from ${IN}; do not edit */\n#include <stddef.h>\n"
  "const unsigned char ${SYM}_bytes[] = {${body}0x00};\n"
  "const char *const ${SYM} = (const char *)${SYM}_bytes;\nconst size_t ${SYM}_len = ${len};\n")
