"""What the tests share: store fixtures and entity builders. Tests import from here, never from another test
module or a conftest; fixtures reach a test directory through its conftest (a re-export)."""
