
app_name = "serving"

urlpatterns: list = []
