# -*- coding: utf-8 -*-

name = 'python'

version = '3.11.7'

description = 'Python interpreter (demo package: wraps the system python3).'

authors = ['rezfs examples']

tools = ['python', 'python3']

def commands():
    env.PATH.prepend('{root}/bin')
    env.PYTHONPATH.append('{root}/lib/python3.11/site-packages')

timestamp = 1704067200

format_version = 2
