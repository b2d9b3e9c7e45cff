"""ETGNN Studio, the Streamlit app: ``streamlit run app`` (entry script app/streamlit_app.py)."""
