import os
import sys

# tests import their shared fixture modules by name
sys.path.insert(0, os.path.dirname(__file__))
