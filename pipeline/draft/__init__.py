"""`mtlrank init`: a spec drafted from the user's own files.

- `layout`: where the files are, their format, root and TFX pattern;
- `sample`: a sample of the rows typed as ExampleGen types them, and its
  TFDV statistics;
- `decide`: each column's kind, the tasks, the split and the slices, with why;
- `compose`: the decisions assembled into the spec's sections, checked by the
  spec's loader and TFX's span matching;
- `render`: the YAML, reasons as comments, release thresholds as suggestions;
- `cli`: the `init` subcommand.
"""
