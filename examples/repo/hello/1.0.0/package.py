# -*- coding: utf-8 -*-

name = 'hello'

version = '1.0.0'

description = 'Prints a greeting; the smallest useful rez package.'

authors = ['rezfs examples']

tools = ['hello']

requires = ['python-3.11']

def commands():
    env.PATH.prepend('{root}/bin')
    env.HELLO_ROOT = '{root}'

timestamp = 1704070800

format_version = 2
