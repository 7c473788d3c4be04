"""Jupyter's own kernel test suite (jupyter_kernel_test) against the Kestrel kernel."""

import jupyter_kernel_test


class KestrelKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "kestrel"
    language_name = "sql"
    file_extension = ".sql"

    # SQL cells answer with results, not printed text: there is no SQL statement that writes to stdout or stderr,
    # so test_execute_stdout and test_execute_stderr have nothing to run (Rust cells will, see issue 7).
    code_hello_world = ""
    code_stderr = ""

    completion_samples = [
        {"text": "SELECT * FROM information_schema.tab", "matches": {"tables"}},
        {"text": "SELECT approx_dis", "matches": {"approx_distinct"}},
        {"text": "SELECT 1 FRO", "matches": {"FROM", "from_unixtime"}},
    ]

    complete_code_samples = ["SELECT 1", "SELECT 1;", "SELECT '(' AS p", "SELECT 1 -- (", "SELECT (1 + 2)"]
    incomplete_code_samples = ["SELECT (1", "SELECT 'abc", "SELECT 1 /* open comment", 'SELECT "col']
    invalid_code_samples = ["SELECT 1)"]

    # SQL has no pager: results are tables in the output area, so there is nothing to page.
    code_page_something = ""

    code_generate_error = "SELECT * FROM no_such_table"

    code_execute_result = [
        {"code": "SELECT 1 + 1 AS two", "mime": "text/html"},
        {
            "code": "SELECT 'hello' AS greeting",
            "result": "+----------+\n| greeting |\n+----------+\n| hello    |\n+----------+\n(1 row)",
        },
        {"code": "SELECT 42 AS answer", "mime": "text/plain"},
    ]

    # SQL results are execute_result messages; display_data and clear_output come with %%plot and %%watch
    # (issues 6 and 7), which this suite will then cover.
    code_display_data = []
    code_clear_output = ""

    code_history_pattern = "SELECT 'hello'*"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "SELECT abs"
