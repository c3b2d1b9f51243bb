"""The README's API reference lists every public name, with a link to the
line where it is defined and its docstring's summary line.

``python tests/test_readme.py`` prints the reference for the README.
"""

import inspect
import re
import types
from pathlib import Path

import ramda_optax

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- api-reference:begin -->", "<!-- api-reference:end -->"


def _entry(qualname: str, obj: object) -> str:
  path = Path(inspect.getsourcefile(obj)).relative_to(ROOT).as_posix()
  line = inspect.getsourcelines(obj)[1]
  summary = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
  return f"- [`{qualname}`]({path}#L{line}): {summary}"


def _module_members(module: types.ModuleType) -> list[tuple[str, object]]:
  names = getattr(module, "__all__", None) or [
      name for name, obj in vars(module).items()
      if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
      and (inspect.isfunction(obj) or inspect.isclass(obj))]
  return [(name, getattr(module, name)) for name in names]


def api_reference() -> str:
  """The reference: top-level names, then each public submodule's."""
  top, modules = [], []
  for name in ramda_optax.__all__:
    obj = getattr(ramda_optax, name)
    if isinstance(obj, types.ModuleType):
      modules.append(obj)
    else:
      top.append(_entry(f"ramda_optax.{name}", obj))
  lines = [BEGIN, "", *top]
  for module in modules:
    short = module.__name__.split(".")[-1]
    summary = (inspect.getdoc(module) or "").split("\n\n")[0]
    lines += ["", f"`ramda_optax.{short}`: {summary.replace(chr(10), ' ')}", ""]
    lines += [_entry(f"ramda_optax.{short}.{name}", obj)
              for name, obj in _module_members(module)]
  return "\n".join(lines + ["", END])


def test_readme_api_reference_is_current():
  readme = (ROOT / "README.md").read_text()
  found = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), readme, re.S)
  assert found, "README.md has no API reference block"
  assert found.group(0) == api_reference(), (
      "README's API reference is stale: regenerate it with "
      "`python tests/test_readme.py`")


def test_every_public_name_has_a_summary():
  for line in api_reference().splitlines():
    if line.startswith("- "):
      assert not line.endswith(": "), line


if __name__ == "__main__":
  print(api_reference())
