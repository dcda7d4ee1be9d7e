@echo off
rem Install the ML Service into .venv on Windows: checks Python (>= 3.10), creates the data folders, installs.
setlocal
cd /d "%~dp0"
if "%PYTHON_EXEC%"=="" set PYTHON_EXEC=python
if "%ML_MODELS_DIR%"=="" set ML_MODELS_DIR=%~dp0data\models
if "%ML_LOGS_DIR%"=="" set ML_LOGS_DIR=%~dp0data\logs
%PYTHON_EXEC% -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" || (echo Python 3.10 or newer is required & exit /b 1)
if /i "%ML_MODELS_DIR%"=="%ML_LOGS_DIR%" (echo ML_MODELS_DIR and ML_LOGS_DIR must be different folders & exit /b 1)
if not exist "%ML_MODELS_DIR%" mkdir "%ML_MODELS_DIR%"
if not exist "%ML_LOGS_DIR%" mkdir "%ML_LOGS_DIR%"
if not exist .venv\Scripts\python.exe %PYTHON_EXEC% -m venv .venv
.venv\Scripts\python -m pip install --quiet --upgrade pip
.venv\Scripts\python -m pip install --quiet --prefer-binary . || exit /b 1
echo Installed. Start with start.cmd (or start.cmd --demo).
