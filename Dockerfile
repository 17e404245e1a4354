FROM python:3.11-slim
WORKDIR /srv/ferry
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
CMD ["python", "-m", "app", "serve", "--no-migrate"]
