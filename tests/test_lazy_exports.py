import subprocess
import sys

import pytest

import hdetr
import hdetr.engine


def test_importing_the_packages_loads_none_of_their_exports():
    code = ("import sys, hdetr, hdetr.engine; "
            "print(sorted(m for m in ('hdetr.models', 'hdetr.checkpoints.official', 'hdetr.engine.trainer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package, name, module", [
    (hdetr, "from_official_checkpoint", "hdetr.checkpoints.official"),
    (hdetr, "ModelConfig", "hdetr.config.model"),
    (hdetr.engine, "read_metrics", "hdetr.engine.metrics_log"),
])
def test_exports_resolve_on_first_use_and_are_listed(package, name, module):
    assert getattr(package, name).__module__ == module
    assert name in dir(package) and name in package.__all__


@pytest.mark.parametrize("package", [hdetr, hdetr.engine])
def test_unknown_names_raise_attribute_error_naming_the_package(package):
    with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute 'no_such_name'"):
        package.no_such_name
