# Writes a C file with each SQL migration as a string, in version order.
# Inputs: OUT (the .c file), FILES (the .sql files, ordered, separated by '|').
string(REPLACE "|" ";" FILES "${FILES}")
set(body "/* Generated from sql/ by cmake/embed_sql.cmake: do not edit. */\n#include \"migrate.h\"\n\nconst struct migrate_file migrate_files[] = {\n")
set(count 0)
foreach(f IN LISTS FILES)
  file(READ ${f} sql HEX)
  get_filename_component(name ${f} NAME)
  string(REGEX MATCH "^[0-9]+" version ${name})
  math(EXPR version "${version}")
  # Hex-escape every byte: no quoting pitfalls with backslashes or trigraphs.
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${sql}")
  string(APPEND body "  {${version}, \"${name}\", \"${escaped}\"},\n")
  math(EXPR count "${count} + 1")
endforeach()
string(APPEND body "};\nconst int migrate_file_count = ${count};\n")
file(WRITE ${OUT} "${body}")
