@echo off
rem Start the ML Service in the foreground on Windows. `start.cmd --demo` runs on sample data.
setlocal
cd /d "%~dp0"
if not exist .venv\Scripts\ml-service.exe call install.cmd || exit /b 1
if "%1"=="--demo" (.venv\Scripts\ml-service demo & exit /b %errorlevel%)
if "%ML_MODELS_DIR%"=="" set ML_MODELS_DIR=%~dp0data\models
if "%ML_LOGS_DIR%"=="" set ML_LOGS_DIR=%~dp0data\logs
if "%ML_TOTARA_URL%"=="" (echo ML_TOTARA_URL is not set & exit /b 1)
if "%ML_TOTARA_KEY%"=="" (echo ML_TOTARA_KEY is not set & exit /b 1)
if "%ML_BIND%"=="" set ML_BIND=127.0.0.1:5000
.venv\Scripts\ml-service serve
