"""The bridge's server side: the HTTP routes a bot calls, the resolver cache behind them, the
binding store they write through, and the invalidation that keeps every process's cache current.
"""
