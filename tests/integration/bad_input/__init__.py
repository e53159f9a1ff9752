"""The bad-input test of issue 11 (tests/integration/test_bad_input.py): the model of a
call (model.py), the calls of every public method that takes a value or a name
(calls_states.py, calls.py), the arguments (arguments.py) and running one call on one
backend (runner.py)."""
