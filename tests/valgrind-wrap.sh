#!/bin/sh
# exe_wrapper of the valgrind test setup. A C test program runs under
# memcheck directly; a test script runs as it is, with HOPXD_TEST_WRAPPER
# set so that it runs each binary it tests under memcheck (running the
# shell itself under valgrind would only check the shell).
VG="valgrind --quiet --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite"
case $(head -c 2 "$1") in
'#!')
	HOPXD_TEST_WRAPPER=$VG
	export HOPXD_TEST_WRAPPER
	exec "$@"
	;;
*)
	exec $VG "$@"
	;;
esac
