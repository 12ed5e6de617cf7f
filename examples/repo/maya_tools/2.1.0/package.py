# -*- coding: utf-8 -*-

name = 'maya_tools'

version = '2.1.0'

description = 'Studio Python tools for Maya, built for two Python versions.'

authors = ['rezfs examples']

variants = [['python-3.10'], ['python-3.11']]

def commands():
    env.PYTHONPATH.prepend('{root}/python')
    env.MAYA_TOOLS_VERSION = '{version}'

timestamp = 1704078000

format_version = 2
