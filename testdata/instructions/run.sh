#!/bin/sh
echo "args: $*"
echo "greeting=$GREETING"
echo "pwd=$(pwd)"
