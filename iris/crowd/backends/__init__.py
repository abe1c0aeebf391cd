"""crowd/backends"""
