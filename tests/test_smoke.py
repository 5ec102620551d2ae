async def test_loop_runs() -> None:
    assert True
