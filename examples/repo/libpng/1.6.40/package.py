# -*- coding: utf-8 -*-

name = 'libpng'

version = '1.6.40'

description = 'PNG reference library (demo package: headers and a placeholder shared library).'

authors = ['rezfs examples']

def commands():
    env.LD_LIBRARY_PATH.prepend('{root}/lib')
    env.CMAKE_PREFIX_PATH.prepend('{root}')
    env.PKG_CONFIG_PATH.prepend('{root}/lib/pkgconfig')

timestamp = 1704074400

format_version = 2
