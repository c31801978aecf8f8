# cmake -DFROM=DIR -DTO=DIR -DMODULES=a/b/x_pb2.py,... -P fix_generated_imports.cmake
#
# Copies protoc's Python modules from FROM (laid out like the proto paths) flat into the
# package directory TO, turning `from calib.v1 import calibration_pb2` into
# `from . import calibration_pb2`: the absolute form would need calib/ on sys.path, and
# grpc/health/v1 would be shadowed by grpcio's own `grpc` package.
string(REPLACE "," ";" MODULES "${MODULES}")
file(MAKE_DIRECTORY ${TO})
foreach(module ${MODULES})
  file(READ ${FROM}/${module} text)
  string(REGEX REPLACE "\nfrom (calib|grpc[.]health)[.]v1 import ([a-z_]+_pb2) as"
                       "\nfrom . import \\2 as" text "${text}")
  get_filename_component(name ${module} NAME)
  file(WRITE ${TO}/${name} "${text}")
endforeach()
file(WRITE ${TO}/__init__.py "")
