"""Table of contents: the tasks each group of hosts gets, in order. Logic lives in tasks/."""
