#!/bin/sh
echo run "$@"
