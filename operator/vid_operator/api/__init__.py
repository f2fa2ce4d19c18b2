"""The vid-operator API (VideoJob and VideoPipeline): pydantic models and the CRDs
generated from them."""
