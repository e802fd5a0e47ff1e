"""The local host (`make run` and the tests): `server.py` serves `function_app` as the Functions host does
(`functions.py` indexes it, `handler.py` answers each connection), `easyauth.py` emulates App Service
Authentication, `ncrontab.py` schedules the timers, `azurite.py` starts Azurite, `datadir.py` holds the data
folder, and `run.py` is what `make run` starts. Nothing here is deployed."""
