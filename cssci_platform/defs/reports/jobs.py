import dagster as dg

report_job = dg.define_asset_job("report_job", ["evaluation_report"],
                                 description="Write the HTML study report of an experiment and log it to MLflow.")
